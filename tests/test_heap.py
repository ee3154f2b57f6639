"""HeapTrimmer: glibc's free pages go back to the system on a timer, and nothing runs without glibc."""

from __future__ import annotations

import asyncio
import platform

import pytest
from waiting import eventually

from reconciler.heap import HeapTrimmer, fix_mmap_threshold, glibc_malloc_trim, limit_arenas

pytestmark = pytest.mark.asyncio


async def test_trims_on_its_interval_while_entered_and_stops_on_exit() -> None:
    calls: list[float] = []
    loop = asyncio.get_running_loop()
    async with HeapTrimmer(interval=0.01, trim=lambda: calls.append(loop.time())) as trimmer:

        async def trims() -> int:
            return trimmer.trims

        await eventually(trims, lambda n: n >= 3, within=5)
    stopped_at = len(calls)
    # Ten intervals after the exit: a running loop would have trimmed again by then.
    await asyncio.sleep(0.1)
    assert len(calls) == stopped_at >= 3


async def test_without_a_trim_function_nothing_runs() -> None:
    async with HeapTrimmer(interval=0.01, trim=None) as trimmer:
        await asyncio.sleep(0.05)  # five intervals: enough for a loop that should not exist to run
    assert trimmer.trims == 0


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
async def test_glibc_trim_is_found_and_callable_here() -> None:
    trim = glibc_malloc_trim()
    assert trim is not None
    blocks = [bytearray(200_000) for _ in range(50)]  # ~10 MB through malloc, then freed
    del blocks
    assert trim() in (0, 1)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
async def test_the_mmap_threshold_is_fixed_here() -> None:
    assert fix_mmap_threshold()


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
async def test_the_arenas_are_limited_here_unless_the_operator_set_malloc_arena_max(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_arenas()
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not limit_arenas()
