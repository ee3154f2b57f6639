"""The engine's fingerprint comparison against a real store, on the path large guilds take."""

from __future__ import annotations

import datetime
import typing

import attrs
import pytest

from reconciler.domain import FingerprintMemo, GuildSnapshot, MemberState, plan_changes
from reconciler.reconcile import compare_with_store

if typing.TYPE_CHECKING:
    from conftest import StoreFactory

pytestmark = pytest.mark.asyncio

GUILD = 81384788765712384
JOINED = datetime.datetime(2021, 6, 1, 8, 30, 15, 123456, tzinfo=datetime.UTC)
MEMBERS = 25_000  # above the size from which the digests are computed while the database reads


def snapshot(nicknames: dict[int, str] | None = None) -> GuildSnapshot:
    """Fresh state objects every call, as each run reads them from the cache."""
    nicknames = nicknames or {}
    members = {
        uid: MemberState(
            user_id=uid,
            username=f"user{uid}",
            joined_at=JOINED,
            nickname=nicknames.get(uid),
            role_ids=frozenset({1001} if uid % 2 else ()),
        )
        for uid in range(1, MEMBERS + 1)
    }
    return GuildSnapshot(guild_id=GUILD, members=members)


async def test_cold_first_and_steady_comparisons(store_factory: StoreFactory) -> None:
    store = await store_factory(batch_size=5000)
    memo = FingerprintMemo()

    # An empty database: everyone is new, and nothing is left to fill the memo with.
    desired = snapshot()
    cold, fill = await compare_with_store(store, desired, memo)
    assert (cold.dirty, cold.clean, fill) == (frozenset(desired.members), 0, None)
    actual = await store.load_snapshot(GUILD, desired.scope)
    assert (await store.apply(GUILD, plan_changes(desired, actual))).ok

    # The first run after a start: all clean; the memo is filled when the caller says (after the run).
    first, fill = await compare_with_store(store, snapshot(), memo)
    assert (first.dirty, first.clean, len(memo)) == (frozenset(), MEMBERS, 0)
    assert fill is not None
    await fill()
    assert len(memo) == MEMBERS

    # Steady state: the memo knows the unchanged, the changed are found.
    renamed = {uid: f"renamed {uid}" for uid in range(1, MEMBERS + 1, 2500)}
    steady, fill = await compare_with_store(store, snapshot(renamed), memo)
    assert (steady.dirty, steady.clean, fill) == (frozenset(renamed), MEMBERS - len(renamed), None)


async def test_members_only_in_the_database_are_dirty(store_factory: StoreFactory) -> None:
    store = await store_factory(batch_size=5000)
    desired = snapshot()
    actual = await store.load_snapshot(GUILD, desired.scope)
    assert (await store.apply(GUILD, plan_changes(desired, actual))).ok

    fewer = snapshot()
    gone = set(range(1, 101))
    fewer = attrs.evolve(fewer, members={uid: m for uid, m in fewer.members.items() if uid not in gone})
    comparison, _ = await compare_with_store(store, fewer, FingerprintMemo())

    assert comparison.dirty == gone
    assert comparison.clean == MEMBERS - len(gone)
