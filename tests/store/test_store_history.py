"""Member history on every backend: which events each change writes, with its source; the role-history
view; the id cursor; the member fields admins ask about; export, forget and retention."""

from __future__ import annotations

import asyncio
import datetime
import typing

import asyncpg
import attrs
import pytest
import sqlalchemy as sa

from reconciler.domain import (
    ActivityDelta,
    EventKind,
    EventOrigin,
    EventSource,
    GuildSnapshot,
    MemberState,
    RoleState,
    Scope,
    compare_fingerprints,
    plan_changes,
    redact,
)
from reconciler.store.bulk import sqlite_time

if typing.TYPE_CHECKING:
    from conftest import Clock, StoreFactory

    from reconciler.store import SqlStore
    from reconciler.store.api import ApplyResult

pytestmark = pytest.mark.asyncio

GUILD = 81384788765712384
JOINED = datetime.datetime(2021, 6, 1, 8, 30, 15, 123456, tzinfo=datetime.UTC)
MODS = RoleState(role_id=1001, name="mods", position=2)
FANS = RoleState(role_id=1002, name="fans", position=1)
BOOST = datetime.datetime(2024, 2, 1, 10, 0, tzinfo=datetime.UTC)
TIMEOUT = datetime.datetime(2024, 3, 2, 10, 0, tzinfo=datetime.UTC)


def member(user_id: int, *, roles: tuple[int, ...] = (), **fields: typing.Any) -> MemberState:
    values: dict[str, typing.Any] = {
        "username": f"user{user_id}",
        "global_name": f"User {user_id}",
        "avatar_hash": f"{user_id:032x}",
        "joined_at": JOINED,
    }
    values.update(fields)
    return MemberState(user_id=user_id, role_ids=frozenset(roles), **values)


def guild(*members: MemberState, guild_id: int = GUILD) -> GuildSnapshot:
    return GuildSnapshot(
        guild_id=guild_id, members={m.user_id: m for m in members}, roles={r.role_id: r for r in (MODS, FANS)}
    )


async def sync(store: SqlStore, desired: GuildSnapshot, origin: EventOrigin | None = None) -> ApplyResult:
    """The engine's recipe (fingerprints, then a full diff of the dirty members), with an origin."""
    guild_id = desired.guild_id
    comparison = compare_fingerprints(desired, await store.load_fingerprints(guild_id, desired.scope))
    actual = await store.load_snapshot(guild_id, desired.scope.narrow(comparison.dirty))
    changes = plan_changes(desired, actual).add_unchanged(comparison.clean)
    if origin is None:
        return await store.apply(guild_id, changes)
    return await store.apply(guild_id, changes, origin=origin)


async def events(store: SqlStore, sql: str = "", **params: typing.Any) -> list[sa.Row[typing.Any]]:
    engine = store._engine  # pyright: ignore[reportPrivateUsage]
    async with engine.connect() as conn:
        query = (
            "SELECT id, guild_id, user_id, kind, old_value, new_value, role_id, observed_at, source, run_id "
            f"FROM member_events {sql} ORDER BY id"
        )
        return list(await conn.execute(sa.text(query), params))


async def query(store: SqlStore, sql: str, **params: typing.Any) -> list[sa.Row[typing.Any]]:
    engine = store._engine  # pyright: ignore[reportPrivateUsage]
    async with engine.connect() as conn:
        return list(await conn.execute(sa.text(sql), params))


async def test_a_first_sync_is_the_baseline_and_writes_no_event(store_factory: StoreFactory) -> None:
    store = await store_factory()

    await sync(store, guild(member(1, roles=(1001,)), member(2), member(3, premium_since=BOOST)))

    assert await events(store) == []


@pytest.mark.parametrize(
    "origin",
    [
        EventOrigin(source=EventSource.GATEWAY, run_id=7),
        EventOrigin(source=EventSource.REPAIR, run_id=8),
        EventOrigin(source=EventSource.RELIST, run_id=9),
    ],
    ids=["gateway", "repair", "relist"],
)
async def test_every_kind_of_change_writes_its_event_with_the_source(
    store_factory: StoreFactory, clock: Clock, origin: EventOrigin
) -> None:
    store = await store_factory()
    alice, bob, carol = member(1, roles=(1001,)), member(2, roles=(1001, 1002)), member(3)
    await sync(store, guild(alice, bob, carol))
    await store.set_reconciled(GUILD, clock())
    dave = member(4, roles=(1002,))
    changed_alice = attrs.evolve(
        alice,
        nickname="ally",
        username="alice",
        global_name="Alice",
        role_ids=frozenset({1002}),
        premium_since=BOOST,
        communication_disabled_until=TIMEOUT,
        pending=True,
        flags=2,
        guild_avatar_hash="a_guild",
    )

    clock.advance(minutes=1)
    await sync(store, guild(changed_alice, carol, dave), origin)  # alice changed, bob left, dave joined
    clock.advance(minutes=1)
    await sync(store, guild(changed_alice, attrs.evolve(bob, role_ids=frozenset({1001})), carol, dave), origin)
    clock.advance(days=40)
    await store.mark_inactive(GUILD, cutoff=clock() - datetime.timedelta(days=30), origin=origin)
    await store.add_activity(
        [ActivityDelta(guild_id=GUILD, user_id=3, day=clock().date(), messages=1, last_seen_at=clock())]
    )

    rows = await events(store)
    seen = {(row.user_id, row.kind, row.old_value, row.new_value, row.role_id) for row in rows}
    assert seen == {
        (1, "nickname_changed", None, "ally", None),
        (1, "username_changed", "user1", "alice", None),
        (1, "global_name_changed", "User 1", "Alice", None),
        (1, "premium_since_changed", None, BOOST.isoformat(), None),
        (1, "timeout_changed", None, TIMEOUT.isoformat(), None),
        (1, "pending_changed", "false", "true", None),
        (1, "flags_changed", "0", "2", None),
        (1, "guild_avatar_changed", None, "a_guild", None),
        (1, "role_removed", None, None, 1001),
        (1, "role_added", None, None, 1002),
        (2, "left", None, None, None),
        (2, "role_removed", None, None, 1001),
        (2, "role_removed", None, None, 1002),
        (2, "rejoined", None, None, None),
        (2, "role_added", None, None, 1001),
        (4, "joined", None, None, None),
        (4, "role_added", None, None, 1002),
        (1, "became_inactive", None, None, None),
        (2, "became_inactive", None, None, None),
        (3, "became_inactive", None, None, None),
        (4, "became_inactive", None, None, None),
        (3, "became_active", None, None, None),
    }
    assert {row.guild_id for row in rows} == {GUILD}
    for row in rows:
        if row.kind == "became_active":
            assert (row.source, row.run_id) == ("gateway", None)  # a message, outside any run
        else:
            assert (row.source, row.run_id) == (origin.source.value, origin.run_id)
    covered = {row.kind for row in rows}
    assert covered == {kind.value for kind in EventKind} - {"forgotten"}


async def test_a_member_a_repair_finds_missing_gets_joined_with_source_repair(
    store_factory: StoreFactory, clock: Clock
) -> None:
    store = await store_factory()
    await sync(store, guild(member(1)))
    await store.set_reconciled(GUILD, clock())

    await sync(store, guild(member(1), member(2)))  # no origin: a repair without a run

    rows = await events(store)
    assert [(r.user_id, r.kind, r.source, r.run_id) for r in rows] == [(2, "joined", "repair", None)]


async def test_the_member_fields_are_stored_read_back_and_cleared(store_factory: StoreFactory) -> None:
    store = await store_factory()
    fancy = member(
        1, premium_since=BOOST, communication_disabled_until=TIMEOUT, pending=True, flags=5, guild_avatar_hash="g"
    )
    await sync(store, guild(fancy, member(2)))

    stored = await store.load_snapshot(GUILD, Scope.everything())
    assert stored.members[1].state == fancy
    plain = member(1)
    await sync(store, guild(plain, member(2)))
    assert (await store.load_snapshot(GUILD, Scope.everything())).members[1].state == plain
    assert (await sync(store, guild(plain, member(2)))).counts.members_changed == 0


async def test_role_history_answers_who_had_a_role_at_a_time_across_a_leave_and_a_rejoin(
    store_factory: StoreFactory, clock: Clock
) -> None:
    store = await store_factory()
    start = clock()
    alice, bob = member(1, roles=(1001,)), member(2)
    await sync(store, guild(alice, bob))  # t0: alice holds mods from the baseline
    await store.set_reconciled(GUILD, clock())
    clock.advance(hours=1)
    await sync(store, guild(attrs.evolve(bob, role_ids=frozenset({1001}))))  # t1: alice leaves, bob gets mods
    clock.advance(hours=1)
    await sync(store, guild(alice, attrs.evolve(bob, role_ids=frozenset({1001}))))  # t2: alice back with mods
    clock.advance(hours=1)
    await sync(store, guild(attrs.evolve(alice, role_ids=frozenset()), attrs.evolve(bob, role_ids=frozenset({1001}))))

    async def holders(hours: float) -> set[int]:
        at = start + datetime.timedelta(hours=hours)
        rows = await query(
            store,
            "SELECT user_id FROM v_role_history WHERE guild_id = :g AND role_id = 1001 "
            "AND valid_from <= :at AND (valid_to IS NULL OR valid_to > :at)",
            g=GUILD,
            at=sqlite_time(at) if store.dialect == "sqlite" else at,
        )
        return {row.user_id for row in rows}

    assert await holders(0.5) == {1}
    assert await holders(1.5) == {2}
    assert await holders(2.5) == {1, 2}
    assert await holders(3.5) == {2}
    readable = await query(store, "SELECT kind, description FROM v_member_history WHERE user_id = 1 ORDER BY id")
    assert [tuple(r) for r in readable] == [
        ("left", "left"),
        ("role_removed", "role_removed: mods"),
        ("rejoined", "rejoined"),
        ("role_added", "role_added: mods"),
        ("role_removed", "role_removed: mods"),
    ]


async def test_the_event_feed_is_read_once_and_in_order_while_changes_happen(
    store_factory: StoreFactory, clock: Clock
) -> None:
    # Two writers (two guilds, two connections as two shard processes would have) and a consumer that
    # follows `id > :last`: every event is seen exactly once, in id order, and ids only grow.
    store = await store_factory()
    other = await store_factory(url=store._url)  # pyright: ignore[reportPrivateUsage]
    second_guild = GUILD + 1
    rounds = 12
    for writer, guild_id in ((store, GUILD), (other, second_guild)):
        await sync(writer, guild(*(member(i) for i in range(1, 40)), guild_id=guild_id))
        await writer.set_reconciled(guild_id, clock())

    async def write(writer: SqlStore, guild_id: int) -> None:
        for n in range(rounds):
            present = [member(i, nickname=f"n{n}", roles=(1001,) if n % 2 else ()) for i in range(1, 40)]
            await sync(writer, guild(*present, guild_id=guild_id))
            await asyncio.sleep(0)

    seen: list[int] = []
    done = asyncio.Event()

    async def consume() -> None:
        last = 0
        while True:
            finished = done.is_set()
            rows = await query(store, "SELECT id FROM member_events WHERE id > :last ORDER BY id", last=last)
            seen.extend(row.id for row in rows)
            if rows:
                last = rows[-1].id
            if finished:
                return
            await asyncio.sleep(0.005)

    consumer = asyncio.create_task(consume())
    await asyncio.gather(write(store, GUILD), write(other, second_guild))
    done.set()
    await consumer

    every = [row.id for row in await events(store)]
    # Each round renames all 39 members of each guild; every round but the first flips their role.
    assert len(every) == 2 * (rounds + rounds - 1) * 39
    assert seen == every
    assert len(set(seen)) == len(seen)


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
async def test_postgres_notifies_the_highest_id_of_each_committed_batch(
    store_factory: StoreFactory, clock: Clock
) -> None:
    store = await store_factory()
    await sync(store, guild(member(1), member(2)))
    await store.set_reconciled(GUILD, clock())
    url = store._engine.url  # pyright: ignore[reportPrivateUsage]
    listener = await asyncpg.connect(host=url.host, port=url.port, user=url.username, database=url.database)
    received: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("reconciler_member_events", lambda *args: received.put_nowait(args[3]))
    try:
        await sync(store, guild(member(1, nickname="x"), member(2), member(3)))
        newest = max(row.id for row in await events(store))
        # The channel is the database's: a test of another schema (another xdist worker) notifies on
        # it too. Ours must arrive within 5 s (a commit's notification is delivered at once).
        payloads: list[str] = []

        async def newest_notified() -> None:
            while not payloads or int(payloads[-1]) != newest:
                payloads.append(await received.get())

        await asyncio.wait_for(newest_notified(), timeout=5)
    finally:
        await listener.close()

    assert int(payloads[-1]) == newest


async def test_export_then_forget_then_export_shows_no_personal_value(
    store_factory: StoreFactory, clock: Clock
) -> None:
    store = await store_factory()
    target = member(5, nickname="fivey", guild_avatar_hash="ga", roles=(1001,))
    await sync(store, guild(target, member(6)))
    await store.set_reconciled(GUILD, clock())
    await sync(store, guild(attrs.evolve(target, nickname="five"), member(6)))
    await store.add_activity(
        [ActivityDelta(guild_id=GUILD, user_id=5, day=clock().date(), messages=3, last_seen_at=clock())]
    )

    before = await store.export_user(5)
    assert before is not None
    text = repr(before)
    for personal in ("user5", "User 5", "five", "fivey", "ga", f"{5:032x}"):
        assert personal in text

    assert await store.forget_user(5) == 1
    after = await store.export_user(5)

    assert after is not None
    assert after["users"][0]["username"] == ""
    assert after["users"][0]["global_name"] is None
    assert after["members"][0]["nickname"] is None
    assert after["members"][0]["guild_avatar_hash"] is None
    assert all(e["old_value"] is None and e["new_value"] is None for e in after["member_events"])
    assert [e["kind"] for e in after["member_events"]][-1] == "forgotten"
    assert after["forgotten_users"][0]["user_id"] == 5
    assert after["message_activity"][0]["messages"] == 3  # counts are not personal values: kept
    text = repr(after)
    for personal in ("user5", "User 5", "fivey", "'ga'", f"{5:032x}"):
        assert personal not in text
    assert await store.forgotten_users() == frozenset({5})
    # The engine hands the redacted state from now on: one pass stores its fingerprint, then nothing.
    redacted = guild(redact(attrs.evolve(target, nickname="five")), member(6))
    first = await sync(store, redacted)
    assert first.counts.members_changed == 0
    assert (await sync(store, redacted)).counts.members_changed == 0
    assert await store.export_user(5) is not None
    assert await store.export_user(424242) is None
    assert await store.forget_user(424242) is None


async def test_retention_prunes_old_history_and_erases_names_of_long_departed_members(
    store_factory: StoreFactory, clock: Clock
) -> None:
    store = await store_factory()
    await sync(store, guild(member(1, nickname="one"), member(2, nickname="two"), member(3, nickname="three")))
    await store.set_reconciled(GUILD, clock())
    await sync(store, guild(member(1, nickname="uno"), member(3, nickname="three")))  # 2 leaves, 1 renamed
    clock.advance(days=100)
    await sync(store, guild(member(1, nickname="uno")))  # 3 leaves now

    erased = await store.erase_left_names(left_before=clock() - datetime.timedelta(days=30))
    pruned = await store.prune_member_events(before=clock() - datetime.timedelta(days=30))

    assert erased == 2  # member 2's nickname, and its user (in no guild any more)
    names = {
        row.user_id: (row.nickname, row.username)
        for row in await query(
            store, "SELECT m.user_id, m.nickname, u.username FROM members m JOIN users u ON u.id = m.user_id"
        )
    }
    assert names == {1: ("uno", "user1"), 2: (None, ""), 3: ("three", "user3")}
    remaining = await events(store)
    assert {(r.user_id, r.kind) for r in remaining} == {(3, "left")}
    assert pruned == 2  # member 1's rename and member 2's departure
