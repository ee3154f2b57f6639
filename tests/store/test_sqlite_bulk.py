"""SQLite's bulk writes run a whole batch in one call on aiosqlite's thread; checked against the plain road.

The one-call road reaches into aiosqlite (`Connection._execute`, `_conn`): if an upgrade removes them,
the store falls back to a statement at a time, which is correct but slower, and these tests say so.
"""

from __future__ import annotations

import asyncio
import datetime
import typing

import aiosqlite
import attrs
import pytest

from reconciler.domain import MemberChange, MemberState
from reconciler.store import SqlStore
from reconciler.store.bulk import MemberBatch, SqliteBulk
from reconciler.store.connect import BULK_CACHE_KIB, CACHE_KIB

if typing.TYPE_CHECKING:
    import pathlib

pytestmark = pytest.mark.asyncio

GUILD = 81384788765712384
NOW = datetime.datetime(2024, 3, 1, 12, 0, tzinfo=datetime.UTC)


class StatementAtATime:
    """An aiosqlite connection seen without its private one-call entry point."""

    def __init__(self, driver: aiosqlite.Connection) -> None:
        self._driver = driver

    def __getattr__(self, name: str) -> typing.Any:
        if name == "_execute":
            raise AttributeError(name)
        return getattr(self._driver, name)


def members(count: int, *, start: int = 1) -> list[MemberState]:
    return [
        MemberState(
            user_id=user_id,
            username=f"user{user_id}",
            global_name=None if user_id % 3 else f"User {user_id}",
            is_bot=user_id % 7 == 0,
            nickname=None if user_id % 2 else f"nick {user_id}",
            joined_at=NOW - datetime.timedelta(days=user_id),
            role_ids=frozenset(range(1000, 1000 + user_id % 4)),
        )
        for user_id in range(start, start + count)
    ]


async def open_store(path: pathlib.Path) -> SqlStore:
    store = await SqlStore.open(f"sqlite+aiosqlite:///{path}", batch_size=1000)
    await store.upgrade()
    await store.upsert_guild(GUILD, name="bulk", member_count=None)
    return store


async def dump(store: SqlStore) -> list[typing.Any]:
    async with store._driver() as driver:
        rows: list[typing.Any] = []
        for table, key in (("users", "id"), ("members", "user_id"), ("member_roles", "user_id, role_id")):
            rows.extend(await driver.execute_fetchall(f"SELECT * FROM {table} ORDER BY {key}"))
        return rows


async def test_installed_aiosqlite_takes_the_one_call_road() -> None:
    assert callable(getattr(aiosqlite.Connection, "_execute", None))
    assert isinstance(aiosqlite.Connection._conn, property)


def row_by_row() -> SqliteBulk:
    """The statements SQLite before 3.33 gets: one row at a time (`executemany`)."""
    bulk = SqliteBulk()
    bulk.multirow = bulk.pipeline = bulk.queues_sends = False
    return bulk


async def test_every_road_writes_the_same_rows(tmp_path: pathlib.Path) -> None:
    created = members(3000)
    later = NOW + datetime.timedelta(hours=1)
    changes = MemberBatch(
        updates=[
            MemberChange(
                state=attrs.evolve(m, nickname="changed", role_ids=m.role_ids - {1001}),
                roles_removed=frozenset({1001} & m.role_ids),
                user_changed=False,
            )
            for m in created[:900]
        ],
        rejoins=[
            MemberChange(state=attrs.evolve(m, username="back"), roles_added=frozenset({1003}) - m.role_ids)
            for m in created[900:1000]
        ],
        leaves=[m.user_id for m in created[1000:1500]],
        refreshes=[(m.user_id, 42) for m in created[1500:1600]],
    )
    roads = {
        "one call, many rows a statement": (SqliteBulk(), lambda d: d),
        "statement at a time": (SqliteBulk(), StatementAtATime),
        "row by row": (row_by_row(), lambda d: d),
    }
    tables: dict[str, list[typing.Any]] = {}
    for name, (bulk, wrap) in roads.items():
        store = await open_store(tmp_path / f"{len(tables)}.db")
        try:
            async with store._driver() as driver:
                await bulk.write_members(wrap(driver), GUILD, MemberBatch(creates=created), NOW)
                await bulk.write_members(wrap(driver), GUILD, changes, later)
            tables[name] = await dump(store)
        finally:
            await store.close()

    reference = tables.pop("one call, many rows a statement")
    links = sum(len(m.role_ids) for m in created) - sum(len(c.roles_removed) for c in changes.updates)
    links += sum(len(c.roles_added) for c in changes.rejoins)
    assert len(reference) == 3000 + 3000 + links
    for name, rows in tables.items():
        assert rows == reference, name


async def test_a_batch_abandoned_while_queued_is_never_written(tmp_path: pathlib.Path) -> None:
    bulk = SqliteBulk()
    store = await open_store(tmp_path / "store.db")
    try:
        async with store._driver() as driver:
            first = await bulk.prepare(GUILD, MemberBatch(creates=members(20_000)), NOW)
            second = await bulk.prepare(GUILD, MemberBatch(creates=members(10, start=50_000)), NOW)
            running = asyncio.ensure_future(bulk.send(driver, first))
            queued = asyncio.ensure_future(bulk.send(driver, second))
            await asyncio.sleep(0)
            queued.cancel()
            await asyncio.wait([running, queued])
            count = await driver.execute_fetchall("SELECT count(*), max(user_id) FROM members")
    finally:
        await store.close()

    assert queued.cancelled()
    assert running.exception() is None
    assert list(count[0]) == [20_000, 20_000]


async def cache_kib(driver: aiosqlite.Connection) -> int:
    rows = list(await driver.execute_fetchall("PRAGMA cache_size"))
    return -int(rows[0][0])  # negative: KiB, not pages


async def test_only_a_writing_connection_holds_the_large_page_cache(tmp_path: pathlib.Path) -> None:
    bulk = SqliteBulk()
    store = await open_store(tmp_path / "store.db")
    try:
        async with store._driver() as driver:
            assert await cache_kib(driver) == CACHE_KIB
            await bulk.begin_bulk(driver)
            assert await cache_kib(driver) == BULK_CACHE_KIB
            await bulk.write_members(driver, GUILD, MemberBatch(creates=members(3000)), NOW)
            await bulk.end_bulk(driver, 3000)
            assert await cache_kib(driver) == CACHE_KIB
    finally:
        await store.close()


async def test_everyday_runs_reuse_a_few_statements_whatever_their_size(tmp_path: pathlib.Path) -> None:
    # sqlite3 keeps 128 compiled statements a connection: one text per row count filled every
    # pooled connection's cache with the gateway's runs.
    bulk = SqliteBulk()
    texts: set[str] = set()
    for count in range(1, 700):
        prepared = await bulk.prepare(GUILD, MemberBatch(creates=members(count)), NOW)
        texts.update(statement for _, statement, _ in prepared.steps)
    # Users and members: 1, 2, 4, ..., 512 rows; links the same (padded up) and 1024, 2048 (padded to
    # 1024's multiples): 32 at most, where every row count had its own (1,911 texts).
    assert len(texts) <= 32

    # ... and the round statements store exactly what the row-by-row road stores.
    small = members(7)
    changes = MemberBatch(
        updates=[MemberChange(state=attrs.evolve(m, nickname="x"), user_changed=False) for m in small[:3]],
        leaves=[m.user_id for m in small[3:5]],
    )
    tables: list[list[typing.Any]] = []
    for index, road in enumerate((SqliteBulk(), row_by_row())):
        store = await open_store(tmp_path / f"{index}.db")
        try:
            async with store._driver() as driver:
                await road.write_members(driver, GUILD, MemberBatch(creates=small), NOW)
                await road.write_members(driver, GUILD, changes, NOW + datetime.timedelta(hours=1))
            tables.append(await dump(store))
        finally:
            await store.close()
    assert tables[0] == tables[1]
    assert len(tables[0]) == 7 + 7 + sum(len(m.role_ids) for m in small)


async def test_many_links_padded_to_a_round_number_are_each_written_once(tmp_path: pathlib.Path) -> None:
    # 16,500 links: a full statement of the most links a statement takes, and a padded rest.
    many_roles = [attrs.evolve(m, role_ids=frozenset(range(1000, 1005))) for m in members(3300)]
    store = await open_store(tmp_path / "store.db")
    try:
        async with store._driver() as driver:
            await SqliteBulk().write_members(driver, GUILD, MemberBatch(creates=many_roles), NOW)
            count = await driver.execute_fetchall("SELECT count(*) FROM member_roles")
    finally:
        await store.close()
    assert list(count[0]) == [16_500]
