"""Keep the C heap from holding on to freed memory: large blocks apart, two arenas, free pages returned every minute.

Measured in the soak (docs/reliability.md): the bot's Python objects stay flat, but glibc's malloc
keeps the pages that member chunks, relists and database batches freed, in the main arena and in one
arena per worker thread (the SQLite driver's among them). In five minutes of one 50,000-member life its
arenas grew from 131 to 200 MB while 40-60 MB of them were in use, and the resident set grew with them,
180-280 MB an hour over 30-minute runs. glibc trims only the free space at the very top of an arena,
and pieces still in use scattered through the rest pin it. Three of glibc's own means fix that:

- Blocks of 128 KiB and more (the lists and dict tables of a 50,000-member comparison, a gateway
  payload) are mapped on their own and unmapped when freed. glibc does so by default, but it raises
  that threshold each time such a block is freed, up to 32 MiB, after which they all land in the arenas.
  The threshold is set once, which keeps it where it is.
- `malloc_trim(0)`, every minute, walks every arena and releases each free page wherever it lies
  (12-15 ms for 100 MB here).
- Two arenas for the whole process instead of up to eight per core. glibc gives a thread that mallocs
  while another thread holds an arena one of its own, and each arena keeps its own peak. The SQLite
  driver runs every pooled connection on a thread of its own, so each connection's busiest moment
  (a page cache filled, a batch of rows built) stayed mapped in its own arena: with the store's other
  SQLite changes, a soak's C heap went from 91-99 MB to 67-69 MB (docs/reliability.md, session 9).

Where there is no glibc (musl, macOS), this does nothing: those allocators return memory in their own way.
"""

from __future__ import annotations

__all__ = ["HeapTrimmer", "fix_mmap_threshold", "glibc_malloc_trim", "limit_arenas"]

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import time
import typing

import typing_extensions

if typing.TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

_LOGGER: typing.Final = logging.getLogger(__name__)


_M_MMAP_THRESHOLD: typing.Final = -3
"""mallopt's parameter number (malloc.h)."""
_MMAP_THRESHOLD_BYTES: typing.Final = 128 * 1024
"""glibc's initial value, kept from rising."""
_M_ARENA_MAX: typing.Final = -8
ARENAS: typing.Final = 2
"""The main arena and one that the other threads share (the SQLite driver's, the default executor's)."""


def _libc_function(name: str) -> typing.Any:  # a ctypes function pointer, or None
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        return getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None


def _glibc_mallopt(parameter: int, value: int) -> bool:
    mallopt = _libc_function("mallopt")
    if mallopt is None or _libc_function("malloc_trim") is None:  # mallopt alone: musl has a stub
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(parameter, value))


def fix_mmap_threshold() -> bool:
    """Map blocks of 128 KiB and more on their own for good; False where the C library is not glibc."""
    return _glibc_mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


def limit_arenas(count: int = ARENAS) -> bool:
    """At most `count` malloc arenas from now on; False without glibc or where MALLOC_ARENA_MAX is set.

    Call it before threads start: arenas made before stay. An operator's MALLOC_ARENA_MAX stands.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    return _glibc_mallopt(_M_ARENA_MAX, count)


def glibc_malloc_trim() -> Callable[[], object] | None:
    """glibc's `malloc_trim(0)`, or None when the C library has no such function."""
    trim = _libc_function("malloc_trim")
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)  # ctypes releases the GIL for the call


class HeapTrimmer:
    """Calls `trim` every `interval` seconds while entered (an async context manager); a no-op without one."""

    def __init__(self, *, interval: float = 60.0, trim: Callable[[], object] | None = None) -> None:
        self._interval = interval
        self._trim = trim
        self._task: asyncio.Task[None] | None = None
        self.trims = 0

    async def __aenter__(self) -> typing_extensions.Self:
        if self._trim is not None:
            self._task = asyncio.create_task(self._loop(self._trim), name="heap-trim")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self, trim: Callable[[], object]) -> None:
        while True:
            await asyncio.sleep(self._interval)
            started = time.perf_counter()
            trim()
            self.trims += 1
            _LOGGER.debug("heap trimmed", extra={"duration_s": round(time.perf_counter() - started, 4)})
