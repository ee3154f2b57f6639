"""Polling for eventually-consistent outcomes, with the deadline a user would notice."""

from __future__ import annotations

__all__ = ["eventually"]

import asyncio
import time
import typing

if typing.TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T = typing.TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], *, within: float, interval: float = 0.05
) -> T:
    """Call `probe` until `accept` holds for its value; fail with the last value after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            msg = f"not reached within {within}s; last value: {value!r}"[:2000]
            raise AssertionError(msg)
        await asyncio.sleep(interval)
