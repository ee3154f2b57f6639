"""The collector is off while member lists load, never for longer than the limit, and never left off."""

from __future__ import annotations

import asyncio
import gc
import typing
import weakref

import pytest

from reconciler.discord.readiness import GuildReadiness
from reconciler.gc_policy import LoadingPause, freeze_loaded_objects

if typing.TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    gc.enable()
    yield
    gc.enable()


@pytest.mark.asyncio
async def test_off_while_any_guild_loads_then_on_with_the_loaded_objects_frozen() -> None:
    pause = LoadingPause()
    readiness = GuildReadiness(on_loading=pause.loading)
    frozen_before = gc.get_freeze_count()

    readiness.guild_available(1, "nonce-1")
    readiness.guild_available(2, "nonce-2")
    assert not gc.isenabled()
    readiness.chunk_received(1, "nonce-1", 0, 1)
    assert not gc.isenabled(), "guild 2 is still loading"
    loaded = [[n] for n in range(1000)]  # lists: objects the collector tracks (a bare object() is not)
    readiness.guild_gone(2)

    assert gc.isenabled()
    assert not pause.paused
    assert gc.get_freeze_count() >= frozen_before + len(loaded)


@pytest.mark.asyncio
async def test_a_guild_without_a_member_request_does_not_pause() -> None:
    readiness = GuildReadiness(on_loading=LoadingPause().loading)

    readiness.guild_available(1, None)  # unavailable, or small enough to come whole in GUILD_CREATE

    assert gc.isenabled()


@pytest.mark.asyncio
async def test_a_load_that_never_ends_turns_the_collector_back_on_after_the_limit() -> None:
    pause = LoadingPause(limit=0.05)
    readiness = GuildReadiness(on_loading=pause.loading)

    readiness.guild_available(1, "stalled")
    assert not gc.isenabled()
    await asyncio.sleep(0.2)
    assert gc.isenabled()

    readiness.guild_available(2, "later")  # a new load may pause it again, for the limit again
    assert not gc.isenabled()
    readiness.chunk_received(2, "later", 0, 1)
    assert gc.isenabled()


@pytest.mark.asyncio
async def test_a_collector_turned_off_by_someone_else_stays_off() -> None:
    gc.disable()
    pause = LoadingPause()
    readiness = GuildReadiness(on_loading=pause.loading)

    readiness.guild_available(1, "n")
    readiness.chunk_received(1, "n", 0, 1)
    pause.close()

    assert not gc.isenabled()


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector can free it


def test_garbage_in_the_older_generations_is_collected_not_frozen_for_good() -> None:
    node = _Node()
    alive = weakref.ref(node)
    gc.collect()  # it survives into the oldest generation...
    del node  # ...and dies there, as a dead gateway session's objects do before the next member list loads

    freeze_loaded_objects()

    assert alive() is None, "a garbage cycle was frozen: the collector will never look at it again"
