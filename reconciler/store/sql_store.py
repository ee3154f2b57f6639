"""`SqlStore`: the `Store` contract on SQLite (aiosqlite) and PostgreSQL (asyncpg) through SQLAlchemy 2."""

from __future__ import annotations

__all__ = ["SqlStore"]

import asyncio
import collections
import contextlib
import datetime
import inspect
import logging
import typing

import asyncpg
import attrs
import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from reconciler.domain import (
    ActivityBatch,
    ChangeCounts,
    EventKind,
    EventOrigin,
    EventSource,
    MemberState,
    MemberStatus,
    RoleState,
    StoredFingerprints,
    StoredMember,
    StoredRole,
    StoredSnapshot,
)
from reconciler.domain.counts import GuildCounts
from reconciler.store import tables as t
from reconciler.store import user_data
from reconciler.store.activity_sql import ActivityTables
from reconciler.store.api import ApplyResult, GuildRecord, HistoryEntry, MemberRecord, StoreStats, SyncRun
from reconciler.store.bulk import BatchCutter, BatchHistory, MemberBatch, MemberRow, PreparedBatch, bulk_backend
from reconciler.store.connect import BEGIN_OPTION, create_engine
from reconciler.store.errors import is_row_error, is_unreachable, row_error_reason
from reconciler.store.migrate import upgrade_database

if typing.TYPE_CHECKING:
    import types
    from collections.abc import (
        AsyncGenerator,
        AsyncIterable,
        AsyncIterator,
        Callable,
        Iterable,
        Mapping,
        Sequence,
    )

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from reconciler.domain import ActivityDelta, ChangeSet, ChannelCounted, Scope
    from reconciler.store.api import ProgressCallback
    from reconciler.store.bulk import BulkBackend

_LOGGER: typing.Final = logging.getLogger(__name__)


ERROR_SAMPLE_SIZE: typing.Final = 20
# Past this many ids a scoped read scans the guild instead of looking members up by id.
_SCAN_THRESHOLD: typing.Final = 200_000
_INT64_MIN: typing.Final = -(2**63)
_INT64_MAX: typing.Final = 2**63 - 1


def _storable(user_ids: frozenset[int]) -> frozenset[int]:
    # An id outside BIGINT cannot be in the database; asking for it would fail the whole read.
    if all(_INT64_MIN <= uid <= _INT64_MAX for uid in user_ids):
        return user_ids
    return frozenset(uid for uid in user_ids if _INT64_MIN <= uid <= _INT64_MAX)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _utc(value: datetime.datetime) -> datetime.datetime:
    if value.tzinfo is None:
        msg = f"naive datetime {value!r}: the store takes aware datetimes only"
        raise ValueError(msg)
    return value.astimezone(datetime.UTC)


@attrs.define(kw_only=True, slots=True)
class _Tally:
    created: int = 0
    updated: int = 0
    rejoined: int = 0
    left: int = 0
    links_added: int = 0
    links_removed: int = 0
    roles_created: int = 0
    roles_updated: int = 0
    roles_deleted: int = 0
    errors: int = 0
    sample: list[tuple[int, str]] = attrs.field(factory=list[tuple[int, str]])
    batches: int = 0
    copy: set[str] = attrs.field(factory=lambda: {"users", "members"})
    """Tables where created members may go through the backend's plain bulk insert (until a conflict)."""

    def count_members(self, batch: MemberBatch) -> None:
        changes = batch.changes()
        self.created += len(batch.creates)
        self.updated += len(batch.updates)
        self.rejoined += len(batch.rejoins)
        self.left += len(batch.leaves)
        self.links_added += sum(len(m.role_ids) for m in batch.creates)
        self.links_added += sum(len(c.roles_added) for c in changes)
        self.links_removed += sum(len(c.roles_removed) for c in changes)

    def fail(self, key: int, exc: BaseException) -> None:
        self.errors += 1
        if len(self.sample) < ERROR_SAMPLE_SIZE:
            self.sample.append((key, row_error_reason(exc)))

    def result(self, planned: ChangeCounts) -> ApplyResult:
        counts = ChangeCounts(
            created=self.created,
            updated=self.updated,
            unchanged=planned.unchanged,
            left=self.left,
            rejoined=self.rejoined,
            links_added=self.links_added,
            links_removed=self.links_removed,
            roles_created=self.roles_created,
            roles_updated=self.roles_updated,
            roles_deleted=self.roles_deleted,
            rewritten=min(planned.rewritten, self.updated),
        )
        return ApplyResult(counts=counts, errors=self.errors, error_sample=tuple(self.sample), batches=self.batches)


@attrs.define(frozen=True, kw_only=True, slots=True)
class _InFlight:
    batch: MemberBatch
    prepared: PreparedBatch
    sent: asyncio.Future[None]
    history: BatchHistory | None


DEFAULT_ORIGIN: typing.Final = EventOrigin(source=EventSource.REPAIR)
"""The origin of changes applied without one (a direct `apply`): a repair without a run."""


async def _report(on_progress: ProgressCallback | None, done: int, total: int) -> None:
    if on_progress is not None:
        pending = on_progress(done, total)
        if inspect.isawaitable(pending):
            await pending


async def _abandon(future: asyncio.Future[None]) -> None:
    # Stop the batch in flight (its transaction rolls back) and wait for it, so that the connection
    # is idle again before it is used or returned; its outcome is dropped on purpose.
    future.cancel()
    await asyncio.wait([future])
    if not future.cancelled():
        future.exception()


async def _one(change_set: ChangeSet) -> AsyncIterator[ChangeSet]:
    yield change_set


class _MemberWriter:
    """The member batches of one apply: one driver connection and a pipeline.

    One connection for every batch (each batch still its own transaction): a checkout per batch costs
    pre-ping round trips, a third of a cold sync on PostgreSQL. The rows of batch k+1 are built while
    batch k's transaction runs on the database; where the driver queues sends (aiosqlite's thread),
    batch k+1 is queued before k is settled, so the database never waits for the event loop.
    """

    def __init__(
        self,
        *,
        bulk: BulkBackend,
        connect: Callable[[], contextlib.AbstractAsyncContextManager[typing.Any]],
        clock: Callable[[], datetime.datetime],
        batch_size: int,
        guild_id: int,
        tally: _Tally,
        on_progress: ProgressCallback | None,
        origin: EventOrigin | None = None,
    ) -> None:
        self._bulk = bulk
        self._origin = origin
        self.record_joins = False
        """Whether created members are joins (the guild has a baseline), not the first sync."""
        self._connect = connect
        self._clock = clock
        self._guild_id = guild_id
        self._tally = tally
        self._on_progress = on_progress
        self._cutter = BatchCutter(batch_size)
        self._depth = 2 if self._bulk.queues_sends else 1
        self._in_flight: collections.deque[_InFlight] = collections.deque()
        self._connection = contextlib.AsyncExitStack()
        self._driver: typing.Any = None
        self._done = 0
        self._total = 0

    async def add(self, change_set: ChangeSet) -> None:
        """Write the change set's members (those that fill a batch now; the rest with the next ones)."""
        self._total += change_set.member_operations
        for batch in self._cutter.add(change_set):
            await self._write(batch)

    async def flush(self) -> None:
        """Write what is waiting and wait for every batch."""
        rest = self._cutter.rest()
        if rest is not None:
            await self._write(rest)
        await self.drain()

    async def drain(self) -> None:
        """Wait for the batches in flight."""
        while self._in_flight:
            await self._settle_oldest()

    async def __aenter__(self) -> _MemberWriter:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: types.TracebackType | None
    ) -> None:
        """Give the connection back; batches still in flight (the apply was interrupted) are abandoned.

        The exception goes on to the connection's context: one interrupted mid-transaction is dropped.
        """
        try:
            for interrupted in self._in_flight:
                await _abandon(interrupted.sent)
            if self._driver is not None:
                try:
                    await self._bulk.end_bulk(self._driver, self._done)
                except Exception as failure:  # never hide why the run stopped
                    _LOGGER.warning("bulk settings not restored", extra={"error": type(failure).__name__})
        finally:
            await self._connection.__aexit__(exc_type, exc, traceback)

    async def _write(self, batch: MemberBatch) -> None:
        driver = self._driver
        if driver is None:
            driver = self._driver = await self._connection.enter_async_context(self._connect())
            await self._bulk.begin_bulk(driver)
        if not self._bulk.pipeline:
            await self.drain()
        history = self._history(batch)
        prepared = await self._bulk.prepare(
            self._guild_id, batch, self._clock(), copy=self._tally.copy, history=history
        )
        while len(self._in_flight) >= self._depth:
            await self._settle_oldest()
        sent = asyncio.ensure_future(self._bulk.send(driver, prepared))
        self._in_flight.append(_InFlight(batch=batch, prepared=prepared, sent=sent, history=history))

    def _history(self, batch: MemberBatch) -> BatchHistory | None:
        if self._origin is None:
            return None
        return BatchHistory.of(batch, self._origin, record_joins=self.record_joins)

    async def _settle_oldest(self) -> None:
        # Removed once settled: a batch interrupted while it is awaited is still abandoned properly.
        self._done += await self._settle(self._in_flight[0])
        self._in_flight.popleft()
        await _report(self._on_progress, self._done, self._total)

    async def _settle(self, in_flight: _InFlight) -> int:
        """Wait for a batch's transaction; retry what failed; count what was written."""
        batch, prepared, sent = in_flight.batch, in_flight.prepared, in_flight.sent
        tally = self._tally
        tally.batches += 1
        while True:
            try:
                await sent
            except Exception as exc:
                if prepared.copy and isinstance(exc, asyncpg.UniqueViolationError):
                    # A "new" row exists already (a repeated join, a user known from another guild):
                    # upserts for that table from now on, and this batch again.
                    tally.copy.discard("users" if getattr(exc, "table_name", None) == "users" else "members")
                    prepared = await self._bulk.prepare(
                        self._guild_id, batch, self._clock(), copy=tally.copy, history=in_flight.history
                    )
                    sent = asyncio.ensure_future(self._bulk.send(self._driver, prepared))
                    continue
                if not is_row_error(exc):
                    raise
                await self._one_by_one(batch, exc)
            else:
                tally.count_members(batch)
            return len(batch)

    async def _one_by_one(self, batch: MemberBatch, cause: Exception) -> None:
        _LOGGER.info(
            "batch failed, retrying member by member",
            extra={"guild_id": self._guild_id, "size": len(batch), "error": type(cause).__name__},
        )
        for user_id, single in batch.split():
            try:
                await self._bulk.write_members(
                    self._driver, self._guild_id, single, self._clock(), history=self._history(single)
                )
            except Exception as exc:
                if not is_row_error(exc):
                    raise
                self._tally.fail(user_id, exc)
            else:
                self._tally.count_members(single)


class SqlStore:
    """The `Store` on SQLite or PostgreSQL; build it with `await SqlStore.open(url)`.

    Bulk member writes and member reads go to the driver connection (see `reconciler.store.bulk`);
    everything else is SQLAlchemy Core.
    """

    __slots__ = ("_activity", "_batch_size", "_bulk", "_clock", "_dialect", "_engine", "_url", "_write_engine")

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        url: str | sa.URL,
        batch_size: int = 1000,
        clock: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        if batch_size < 1:
            msg = f"batch_size must be positive, got {batch_size}"
            raise ValueError(msg)
        self._engine = engine
        # SQLite write transactions take the write lock up front (BEGIN IMMEDIATE): a transaction that
        # reads first and writes later could fail with SQLITE_BUSY without waiting for busy_timeout.
        self._write_engine = engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})
        self._url = url
        self._dialect = engine.dialect.name
        self._bulk: BulkBackend = bulk_backend(self._dialect)
        self._batch_size = batch_size
        self._clock = clock
        self._activity = ActivityTables(dialect=self._dialect, clock=clock)

    @classmethod
    async def open(
        cls,
        url: str | sa.URL,
        *,
        batch_size: int = 1000,
        clock: Callable[[], datetime.datetime] = _utcnow,
        pool_size: int = 5,
    ) -> SqlStore:
        """A store for `url` ('sqlite+aiosqlite:///path' or 'postgresql+asyncpg://...').

        Connects lazily; call `upgrade()` (or `reconciler db upgrade`) before the first use of a new
        database. The folder of a SQLite file is created if missing.
        """
        return cls(create_engine(url, pool_size=pool_size), url=url, batch_size=batch_size, clock=clock)

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self._dialect

    @property
    def batch_size(self) -> int:
        """Member operations per transaction in `apply`."""
        return self._batch_size

    async def close(self) -> None:
        await self._engine.dispose()

    async def upgrade(self) -> None:
        await upgrade_database(self._url)

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(5):
                async with self._engine.connect() as conn:
                    await conn.execute(sa.text("SELECT 1"))
        except (OSError, TimeoutError, sqlalchemy.exc.SQLAlchemyError, asyncpg.PostgresError) as exc:
            _LOGGER.warning("database ping failed", extra={"error": type(exc).__name__})
            return False
        return True

    def is_unreachable(self, exc: BaseException) -> bool:
        return is_unreachable(exc)

    # --- reads for the reconcile -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _driver(self) -> AsyncGenerator[typing.Any]:
        async with self._engine.connect() as conn:
            raw = await conn.get_raw_connection()
            try:
                yield raw.driver_connection
            except BaseException:
                # Interrupted (cancelled, connection lost) in the middle of driver calls SQLAlchemy
                # does not know about: the session may be mid-transaction. Drop it, never reuse it.
                await asyncio.shield(conn.invalidate())
                raise

    async def load_fingerprints(self, guild_id: int, scope: Scope) -> StoredFingerprints:
        user_ids = None if scope.user_ids is None else _storable(scope.user_ids)
        if user_ids is not None and not user_ids:
            return StoredFingerprints(guild_id=guild_id, fingerprints={}, left=0, scope=scope)
        scan = user_ids is None or len(user_ids) > _SCAN_THRESHOLD
        async with self._driver() as driver:
            found, left = await self._bulk.read_fingerprints(driver, guild_id, None if scan else user_ids)
        if scan and user_ids is not None:
            found = {uid: fp for uid, fp in found.items() if uid in user_ids}
        # A scan of a scope counts the guild's left rows: more than the scope's, which only costs reads.
        return StoredFingerprints(guild_id=guild_id, fingerprints=found, left=left, scope=scope)

    async def load_snapshot(self, guild_id: int, scope: Scope) -> StoredSnapshot:
        user_ids = None if scope.user_ids is None else _storable(scope.user_ids)
        if user_ids is not None and len(user_ids) > _SCAN_THRESHOLD:
            user_ids = None  # cheaper to read the guild and drop the rest
        rows: list[MemberRow] = []
        links: Iterable[tuple[int, int]] = ()
        if user_ids is None or user_ids:
            async with self._driver() as driver:
                rows, links = await self._bulk.read_members(driver, guild_id, user_ids)
        role_ids: dict[int, set[int]] = {}
        for user_id, role_id in links:
            role_ids.setdefault(user_id, set()).add(role_id)
        wanted = scope.user_ids
        members = {
            row[0]: StoredMember(
                state=MemberState(
                    user_id=row[0],
                    username=row[1],
                    global_name=row[2],
                    avatar_hash=row[3],
                    is_bot=row[4],
                    nickname=row[5],
                    joined_at=row[6],
                    role_ids=frozenset(role_ids.get(row[0], ())),
                    premium_since=row[9],
                    communication_disabled_until=row[10],
                    pending=row[11],
                    flags=row[12],
                    guild_avatar_hash=row[13],
                ),
                status=MemberStatus(row[7]),
                fingerprint=row[8],
            )
            for row in rows
            if wanted is None or row[0] in wanted
        }
        roles: dict[int, StoredRole] = {}
        if scope.roles:
            async with self._engine.connect() as conn:
                roles = await self._load_roles(conn, guild_id)
        return StoredSnapshot(guild_id=guild_id, members=members, roles=roles, scope=scope)

    async def _load_roles(self, conn: AsyncConnection, guild_id: int) -> dict[int, StoredRole]:
        r = t.roles
        result = await conn.execute(sa.select(r).where(r.c.guild_id == guild_id))
        return {
            row.role_id: StoredRole(
                state=RoleState(
                    role_id=row.role_id,
                    name=row.name,
                    color=row.color,
                    position=row.position,
                    permissions=row.permissions,
                    managed=bool(row.managed),
                ),
                deleted=row.deleted_at is not None,
            )
            for row in result
        }

    # --- writes of the reconcile -------------------------------------------------------------------

    def _insert(self, table: sa.Table) -> typing.Any:
        # INSERT with ON CONFLICT support for the current backend.
        return (sqlite_dialect.insert if self._dialect == "sqlite" else pg_dialect.insert)(table)

    async def apply(
        self,
        guild_id: int,
        change_set: ChangeSet,
        *,
        on_progress: ProgressCallback | None = None,
        origin: EventOrigin = DEFAULT_ORIGIN,
    ) -> ApplyResult:
        return await self.apply_stream(guild_id, _one(change_set), on_progress=on_progress, origin=origin)

    async def apply_stream(
        self,
        guild_id: int,
        parts: AsyncIterable[ChangeSet],
        *,
        on_progress: ProgressCallback | None = None,
        origin: EventOrigin = DEFAULT_ORIGIN,
    ) -> ApplyResult:
        tally = _Tally()
        planned = ChangeCounts()
        recorded = False
        async with _MemberWriter(
            bulk=self._bulk,
            connect=self._driver,
            clock=self._clock,
            batch_size=self._batch_size,
            guild_id=guild_id,
            tally=tally,
            on_progress=on_progress,
            origin=origin,
        ) as writer:
            iterator = aiter(parts)
            while True:
                try:
                    part = await anext(iterator)
                except StopAsyncIteration:
                    break
                except Exception:
                    # What was handed over before the producer failed is a valid plan: write it, then say why.
                    await writer.flush()
                    raise
                if part.guild_id != guild_id:
                    msg = f"change set for guild {part.guild_id} applied to guild {guild_id}"
                    raise ValueError(msg)
                planned += part.counts
                if part.is_empty:
                    continue
                if not recorded:
                    writer.record_joins = await self._ensure_guild(guild_id)
                    recorded = True
                if part.roles_to_create or part.roles_to_update or part.roles_to_delete:
                    await writer.drain()  # one writer at a time (SQLite), and in the order handed over
                    await self._apply_roles(guild_id, part, tally)
                await writer.add(part)
            await writer.flush()
        result = tally.result(planned)
        _LOGGER.debug(
            "change set applied",
            extra={"guild_id": guild_id, "batches": result.batches, "errors": result.errors},
        )
        return result

    async def _ensure_guild(self, guild_id: int) -> bool:
        """Record the guild if new; whether it has been reconciled in full before (has a baseline).

        Before that, created members are the guild's first sync and write no `joined` event.
        """
        now = self._clock()
        statement = (
            self._insert(t.guilds)
            .values(id=guild_id, first_seen_at=now, updated_at=now)
            .on_conflict_do_nothing(index_elements=[t.guilds.c.id])
        )
        async with self._write_engine.begin() as conn:
            await conn.execute(statement)
            reconciled = await conn.execute(sa.select(t.guilds.c.last_reconciled_at).where(t.guilds.c.id == guild_id))
            return reconciled.scalar_one_or_none() is not None

    async def _apply_roles(self, guild_id: int, change_set: ChangeSet, tally: _Tally) -> None:
        writes: list[tuple[str, RoleState | int]] = [
            *(("create", role) for role in change_set.roles_to_create),
            *(("update", role) for role in change_set.roles_to_update),
            *(("delete", role_id) for role_id in change_set.roles_to_delete),
        ]
        try:
            await self._write_roles(guild_id, writes)
        except Exception as exc:
            if not is_row_error(exc):
                raise
        else:
            self._count_roles(writes, tally)
            return
        for write in writes:
            try:
                await self._write_roles(guild_id, [write])
            except Exception as exc:
                if not is_row_error(exc):
                    raise
                _, payload = write
                tally.fail(payload.role_id if isinstance(payload, RoleState) else payload, exc)
            else:
                self._count_roles([write], tally)

    @staticmethod
    def _count_roles(writes: Iterable[tuple[str, RoleState | int]], tally: _Tally) -> None:
        for kind, _ in writes:
            if kind == "create":
                tally.roles_created += 1
            elif kind == "update":
                tally.roles_updated += 1
            else:
                tally.roles_deleted += 1

    async def _write_roles(self, guild_id: int, writes: Sequence[tuple[str, RoleState | int]]) -> None:
        now = self._clock()
        upserts = [
            {
                "guild_id": guild_id,
                "role_id": role.role_id,
                "name": role.name,
                "color": role.color,
                "position": role.position,
                "permissions": role.permissions,
                "managed": role.managed,
                "deleted_at": None,
                "updated_at": now,
            }
            for _, role in writes
            if isinstance(role, RoleState)
        ]
        deletes = [role_id for _, role_id in writes if isinstance(role_id, int)]
        async with self._write_engine.begin() as conn:
            if upserts:
                statement = self._insert(t.roles)
                statement = statement.on_conflict_do_update(
                    index_elements=[t.roles.c.guild_id, t.roles.c.role_id],
                    set_={
                        name: statement.excluded[name]
                        for name in ("name", "color", "position", "permissions", "managed", "deleted_at", "updated_at")
                    },
                )
                await conn.execute(statement, upserts)
            if deletes:
                await conn.execute(
                    sa.update(t.roles)
                    .where(
                        t.roles.c.guild_id == guild_id,
                        t.roles.c.role_id.in_(deletes),
                        t.roles.c.deleted_at.is_(None),
                    )
                    .values(deleted_at=now, updated_at=now)
                )

    # --- guilds --------------------------------------------------------------------------------------

    async def upsert_guild(self, guild_id: int, name: str | None, member_count: int | None) -> None:
        now = self._clock()
        statement = self._insert(t.guilds).values(
            id=guild_id, name=name, member_count=member_count, first_seen_at=now, updated_at=now
        )
        statement = statement.on_conflict_do_update(
            index_elements=[t.guilds.c.id],
            set_={"name": name, "member_count": member_count, "removed_at": None, "updated_at": now},
        )
        async with self._write_engine.begin() as conn:
            await conn.execute(statement)

    async def mark_guild_removed(self, guild_id: int) -> None:
        now = self._clock()
        async with self._write_engine.begin() as conn:
            await conn.execute(
                sa.update(t.guilds)
                .where(t.guilds.c.id == guild_id, t.guilds.c.removed_at.is_(None))
                .values(removed_at=now, updated_at=now)
            )

    async def set_reconciled(self, guild_id: int, at: datetime.datetime) -> None:
        async with self._write_engine.begin() as conn:
            await conn.execute(
                sa.update(t.guilds)
                .where(t.guilds.c.id == guild_id)
                .values(last_reconciled_at=_utc(at), updated_at=self._clock())
            )

    async def guilds(self) -> list[GuildRecord]:
        g = t.guilds
        async with self._engine.connect() as conn:
            result = await conn.execute(sa.select(g).order_by(g.c.id))
            return [
                GuildRecord(
                    id=row.id,
                    name=row.name,
                    member_count=row.member_count,
                    first_seen_at=row.first_seen_at,
                    last_reconciled_at=row.last_reconciled_at,
                    removed_at=row.removed_at,
                )
                for row in result
            ]

    # --- activity and cleanup ------------------------------------------------------------------------

    async def add_activity(self, rows: Sequence[ActivityDelta]) -> None:
        await self.commit_activity(ActivityBatch(members=rows))

    async def commit_activity(self, batch: ActivityBatch) -> None:
        if not batch:
            return
        async with self._write_engine.begin() as conn:
            if batch.members:
                # Before any row lock, as every event writer does: the flush may write `became_active`.
                await self._lock_events(conn)
            await self._activity.write(conn, batch)
            if batch.members:
                await self._notify_events(conn)

    async def load_counted(self, guild_id: int) -> Mapping[int, ChannelCounted]:
        async with self._engine.connect() as conn:
            return await self._activity.load_counted(conn, guild_id)

    async def set_channel_access(
        self, guild_id: int, channel_id: int, *, forbidden: bool, watermark_if_new: int
    ) -> None:
        async with self._write_engine.begin() as conn:
            await self._activity.set_access(
                conn, guild_id, channel_id, forbidden=forbidden, watermark_if_new=watermark_if_new
            )

    async def top_channels(
        self, guild_id: int, *, now: datetime.datetime, days: int = 7, limit: int = 5
    ) -> Sequence[tuple[int, int]]:
        today = _utc(now).date()
        since = today - datetime.timedelta(days=days - 1)
        async with self._engine.connect() as conn:
            return await self._activity.top_channels(conn, guild_id, since=since, until=today, limit=limit)

    async def activity_gap_count(self, guild_id: int) -> int:
        async with self._engine.connect() as conn:
            return await self._activity.gap_count(conn, guild_id)

    async def mark_inactive(
        self, guild_id: int, *, cutoff: datetime.datetime, origin: EventOrigin = DEFAULT_ORIGIN
    ) -> int:
        m = t.members
        now = self._clock()
        idle = (
            m.c.guild_id == guild_id,
            m.c.status == MemberStatus.ACTIVE.value,
            sa.func.coalesce(m.c.last_seen_at, m.c.first_seen_at)
            < sa.bindparam("cutoff", _utc(cutoff), type_=t.UtcDateTime()),
        )
        events = sa.insert(t.member_events).from_select(
            ["guild_id", "user_id", "kind", "observed_at", "source", "run_id"],
            sa.select(
                m.c.guild_id,
                m.c.user_id,
                sa.literal(EventKind.BECAME_INACTIVE.value),
                sa.bindparam("now", now, type_=t.UtcDateTime()),
                sa.literal(origin.source.value),
                sa.literal(origin.run_id, type_=sa.BigInteger),
            )
            .where(*idle)
            .order_by(m.c.user_id),
        )
        async with self._write_engine.begin() as conn:
            await self._lock_events(conn)
            await conn.execute(events)
            await self._notify_events(conn)
            result = await conn.execute(
                sa.update(m).where(*idle).values(status=MemberStatus.INACTIVE.value, updated_at=now)
            )
            return result.rowcount

    async def _lock_events(self, conn: AsyncConnection) -> None:
        # See PostgresBulk._EVENTS_LOCK: event ids become visible in id order. Taken before any row
        # lock of the transaction, by every writer of events, so that none of them can deadlock.
        if self._dialect == "postgresql":
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(1919248229, 17)"))

    async def _notify_events(self, conn: AsyncConnection) -> None:
        if self._dialect == "postgresql":
            await conn.execute(
                sa.text("SELECT pg_notify('reconciler_member_events', (SELECT max(id) FROM member_events)::text)")
            )

    # --- history and personal data ------------------------------------------------------------------

    async def forgotten_users(self) -> frozenset[int]:
        async with self._engine.connect() as conn:
            result = await conn.execute(sa.select(t.forgotten_users.c.user_id))
            return frozenset(result.scalars())

    async def member_record(
        self, guild_id: int, user_id: int, *, now: datetime.datetime, events: int = 10
    ) -> MemberRecord | None:
        today = _utc(now).date()
        since_7 = today - datetime.timedelta(days=6)
        since_30 = today - datetime.timedelta(days=29)
        m, u, a, e = t.members, t.users, t.message_activity, t.member_events
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(m, u.c.username, u.c.global_name)
                    .join(u, u.c.id == m.c.user_id)
                    .where(m.c.guild_id == guild_id, m.c.user_id == user_id)
                )
            ).one_or_none()
            if row is None:
                return None
            window = (
                await conn.execute(
                    sa.select(
                        sa.func.coalesce(sa.func.sum(sa.case((a.c.day >= since_7, a.c.messages), else_=0)), 0),
                        sa.func.coalesce(sa.func.sum(a.c.messages), 0),
                    ).where(a.c.guild_id == guild_id, a.c.user_id == user_id, a.c.day >= since_30, a.c.day <= today)
                )
            ).one()
            role_ids = (
                await conn.execute(
                    sa.select(t.member_roles.c.role_id)
                    .where(t.member_roles.c.guild_id == guild_id, t.member_roles.c.user_id == user_id)
                    .order_by(t.member_roles.c.role_id)
                )
            ).scalars()
            recent = await conn.execute(
                sa.select(e)
                .where(e.c.guild_id == guild_id, e.c.user_id == user_id)
                .order_by(e.c.id.desc())
                .limit(events)
            )
            entries = tuple(
                HistoryEntry(
                    id=ev.id,
                    observed_at=ev.observed_at,
                    kind=ev.kind,
                    old_value=ev.old_value,
                    new_value=ev.new_value,
                    role_id=ev.role_id,
                    source=ev.source,
                    run_id=ev.run_id,
                )
                for ev in recent
            )
            return MemberRecord(
                guild_id=guild_id,
                user_id=user_id,
                username=row.username,
                global_name=row.global_name,
                nickname=row.nickname,
                status=row.status,
                joined_at=row.joined_at,
                first_seen_at=row.first_seen_at,
                last_seen_at=row.last_seen_at,
                left_at=row.left_at,
                messages_7d=int(window[0]),
                messages_30d=int(window[1]),
                role_ids=tuple(role_ids),
                premium_since=row.premium_since,
                communication_disabled_until=row.communication_disabled_until,
                pending=bool(row.pending),
                flags=int(row.flags),
                recent_events=entries,
            )

    async def prune_member_events(self, *, before: datetime.datetime) -> int:
        async with self._write_engine.begin() as conn:
            return await user_data.prune_events(conn, before=_utc(before))

    async def erase_left_names(self, *, left_before: datetime.datetime) -> int:
        async with self._write_engine.begin() as conn:
            return await user_data.erase_left_names(conn, left_before=_utc(left_before), now=self._clock())

    async def export_user(self, user_id: int) -> dict[str, list[dict[str, typing.Any]]] | None:
        """Every row about `user_id` in every table, history included (None: the user is unknown)."""
        async with self._engine.connect() as conn:
            return await user_data.export_user(conn, user_id)

    async def forget_user(self, user_id: int) -> int | None:
        """Erase the user's personal values everywhere and put the user on the forgotten list.

        Returns the number of guild memberships kept as id-only rows; None when the user is unknown.
        """
        async with self._write_engine.begin() as conn:
            await self._lock_events(conn)
            kept = await user_data.forget_user(conn, user_id, now=self._clock())
            if kept is not None:
                await self._notify_events(conn)
            return kept

    async def prune_deleted_role_links(self, guild_id: int) -> int:
        deleted_roles = sa.select(t.roles.c.role_id).where(
            t.roles.c.guild_id == guild_id, t.roles.c.deleted_at.is_not(None)
        )
        async with self._write_engine.begin() as conn:
            result = await conn.execute(
                sa.delete(t.member_roles).where(
                    t.member_roles.c.guild_id == guild_id, t.member_roles.c.role_id.in_(deleted_roles)
                )
            )
            return result.rowcount

    # --- runs ----------------------------------------------------------------------------------------

    async def start_run(self, guild_id: int, kind: str, trigger: str, requested_by: int | None) -> int:
        if trigger not in t.RUN_TRIGGERS:
            msg = f"unknown trigger {trigger!r}: one of {', '.join(t.RUN_TRIGGERS)}"
            raise ValueError(msg)
        async with self._write_engine.begin() as conn:
            result = await conn.execute(
                sa.insert(t.sync_runs).values(
                    guild_id=guild_id,
                    kind=kind,
                    trigger=trigger,
                    requested_by=requested_by,
                    started_at=self._clock(),
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    async def finish_run(
        self,
        run_id: int,
        *,
        outcome: str,
        created: int = 0,
        updated: int = 0,
        unchanged: int = 0,
        left: int = 0,
        inactive: int = 0,
        errors: int = 0,
        error_sample: str | None = None,
    ) -> None:
        async with self._write_engine.begin() as conn:
            await conn.execute(
                sa.update(t.sync_runs)
                .where(t.sync_runs.c.id == run_id)
                .values(
                    finished_at=self._clock(),
                    outcome=outcome,
                    created=created,
                    updated=updated,
                    unchanged=unchanged,
                    left=left,
                    inactive=inactive,
                    errors=errors,
                    error_sample=error_sample,
                )
            )

    async def record_gateway_run(
        self,
        guild_id: int,
        *,
        kind: str,
        outcome: str,
        started_at: datetime.datetime,
        period_seconds: float,
        created: int = 0,
        updated: int = 0,
        unchanged: int = 0,
        left: int = 0,
        inactive: int = 0,
        errors: int = 0,
        error_sample: str | None = None,
    ) -> int:
        if not period_seconds > 0:
            msg = f"period_seconds must be positive, got {period_seconds}"
            raise ValueError(msg)
        s = t.sync_runs
        finished = self._clock()
        epoch = finished.timestamp()
        period = datetime.datetime.fromtimestamp(epoch - epoch % period_seconds, datetime.UTC)
        counts = {
            "created": created,
            "updated": updated,
            "unchanged": unchanged,
            "left": left,
            "inactive": inactive,
            "errors": errors,
        }
        insert = self._insert(s).values(
            guild_id=guild_id,
            kind=kind,
            trigger="gateway",
            started_at=_utc(started_at),
            finished_at=finished,
            outcome=outcome,
            error_sample=error_sample,
            runs=1,
            period_start=period,
            **counts,
        )
        summed = {name: s.c[name] + insert.excluded[name] for name in counts}
        statement = insert.on_conflict_do_update(
            index_elements=[s.c.guild_id, s.c.kind, s.c.outcome, s.c.period_start],
            set_={
                **summed,
                "runs": s.c.runs + 1,
                "finished_at": insert.excluded.finished_at,
                "error_sample": sa.func.coalesce(insert.excluded.error_sample, s.c.error_sample),
            },
        ).returning(s.c.id)
        async with self._write_engine.begin() as conn:
            return int((await conn.execute(statement)).scalar_one())

    @staticmethod
    def _run(row: sa.Row[typing.Any]) -> SyncRun:
        return SyncRun(**{name: getattr(row, name) for name in attrs.fields_dict(SyncRun)})

    @staticmethod
    def _latest_of_each_kind() -> sa.Subquery:
        """Each run with its rank among its guild's runs of the same kind, latest (by when it ended) first."""
        s = t.sync_runs
        rank = (
            sa.func.row_number()
            .over(
                partition_by=(s.c.guild_id, s.c.kind),
                order_by=(sa.func.coalesce(s.c.finished_at, s.c.started_at).desc(), s.c.id.desc()),
            )
            .label("rank")
        )
        return sa.select(s.c.id, s.c.guild_id, rank).subquery()

    async def last_runs(self, guild_id: int) -> dict[str, SyncRun]:
        s = t.sync_runs
        ranked = self._latest_of_each_kind()
        latest = sa.select(ranked.c.id).where(ranked.c.guild_id == guild_id, ranked.c.rank == 1)
        async with self._engine.connect() as conn:
            result = await conn.execute(sa.select(s).where(s.c.guild_id == guild_id, s.c.id.in_(latest)))
            return {row.kind: self._run(row) for row in result}

    async def prune_bookkeeping(
        self, *, runs_before: datetime.datetime, slots_before: datetime.datetime
    ) -> dict[str, int]:
        s, slots = t.sync_runs, t.scheduler_slots
        ranked = self._latest_of_each_kind()
        latest = sa.select(ranked.c.id).where(ranked.c.rank == 1)
        async with self._write_engine.begin() as conn:
            runs = await conn.execute(
                sa.delete(s).where(
                    sa.func.coalesce(s.c.finished_at, s.c.started_at) < _utc(runs_before), s.c.id.not_in(latest)
                )
            )
            claimed = await conn.execute(sa.delete(slots).where(slots.c.claimed_at < _utc(slots_before)))
            return {"sync_runs": runs.rowcount, "scheduler_slots": claimed.rowcount}

    async def count_runs(
        self, *, guild_id: int | None = None, kind: str | None = None, outcome: str | None = None
    ) -> int:
        s = t.sync_runs
        query = sa.select(sa.func.count()).select_from(s)
        if guild_id is not None:
            query = query.where(s.c.guild_id == guild_id)
        if kind is not None:
            query = query.where(s.c.kind == kind)
        if outcome is not None:
            query = query.where(s.c.outcome == outcome)
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    # --- statistics ----------------------------------------------------------------------------------

    async def stats(self, guild_id: int, *, now: datetime.datetime) -> StoreStats:
        today = _utc(now).date()
        since_7 = today - datetime.timedelta(days=6)
        since_30 = today - datetime.timedelta(days=29)
        m, a = t.members, t.message_activity

        def messages_in(since: datetime.date) -> sa.ColumnElement[int]:
            return sa.func.coalesce(sa.func.sum(sa.case((a.c.day >= since, a.c.messages), else_=0)), 0)

        async with self._engine.connect() as conn:
            status_query = sa.select(m.c.status, sa.func.count()).where(m.c.guild_id == guild_id).group_by(m.c.status)
            by_status: dict[str, int] = {str(status): int(count) for status, count in await conn.execute(status_query)}
            roles = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(t.roles)
                    .where(t.roles.c.guild_id == guild_id, t.roles.c.deleted_at.is_(None))
                )
            ).scalar_one()
            window = (
                await conn.execute(
                    sa.select(messages_in(today), messages_in(since_7), messages_in(since_30)).where(
                        a.c.guild_id == guild_id, a.c.day >= since_30, a.c.day <= today
                    )
                )
            ).one()
            active_7d = (
                await conn.execute(
                    sa.select(sa.func.count(sa.distinct(a.c.user_id))).where(
                        a.c.guild_id == guild_id, a.c.day >= since_7, a.c.day <= today
                    )
                )
            ).scalar_one()
            tracked_since = (
                await conn.execute(sa.select(sa.func.min(a.c.day)).where(a.c.guild_id == guild_id))
            ).scalar_one()
            reconciled = (
                await conn.execute(sa.select(t.guilds.c.last_reconciled_at).where(t.guilds.c.id == guild_id))
            ).scalar_one_or_none()
        if isinstance(tracked_since, str):  # SQLite returns MIN() of a date column as text
            tracked_since = datetime.date.fromisoformat(tracked_since)
        return StoreStats(
            guild_id=guild_id,
            members_by_status={status.value: int(by_status.get(status.value, 0)) for status in MemberStatus},
            roles=int(roles),
            messages_today=int(window[0]),
            messages_7d=int(window[1]),
            messages_30d=int(window[2]),
            active_users_7d=int(active_7d),
            tracked_since=tracked_since,
            last_reconciled_at=reconciled,
        )

    async def present_counts(self, guild_id: int) -> GuildCounts:
        m, mr, r = t.members, t.member_roles, t.roles
        left = MemberStatus.LEFT.value
        members = sa.select(sa.func.count()).select_from(m).where(m.c.guild_id == guild_id, m.c.status != left)
        # Every link of the guild (an index-only scan of (guild_id, role_id)), less the links of members who
        # left (few, found through (guild_id, status)): a join of every link with its member costs 5x more.
        links = sa.select(mr.c.role_id, sa.func.count()).where(mr.c.guild_id == guild_id).group_by(mr.c.role_id)
        left_links = (
            sa.select(mr.c.role_id, sa.func.count())
            .select_from(m.join(mr, sa.and_(mr.c.guild_id == m.c.guild_id, mr.c.user_id == m.c.user_id)))
            .where(m.c.guild_id == guild_id, m.c.status == left)
            .group_by(mr.c.role_id)
        )
        live_roles = sa.select(r.c.role_id).where(
            r.c.guild_id == guild_id, r.c.deleted_at.is_(None), r.c.role_id != guild_id
        )
        async with self._engine.connect() as conn:
            count = int((await conn.execute(members)).scalar_one())
            held = collections.Counter({int(role): int(n) for role, n in (await conn.execute(links)).all()})
            held.subtract({int(role): int(n) for role, n in (await conn.execute(left_links)).all()})
            role_ids = [int(role) for role in (await conn.execute(live_roles)).scalars()]
        return GuildCounts(members=count, role_members={role: held[role] for role in role_ids})

    # --- coordination --------------------------------------------------------------------------------

    async def claim_slot(self, job: str, slot: str, owner: str) -> bool:
        statement = (
            self._insert(t.scheduler_slots)
            .values(job=job, slot=slot, claimed_by=owner, claimed_at=self._clock())
            .on_conflict_do_nothing(index_elements=[t.scheduler_slots.c.job, t.scheduler_slots.c.slot])
        )
        async with self._write_engine.begin() as conn:
            result = await conn.execute(statement)
            return result.rowcount == 1

    @contextlib.asynccontextmanager
    async def guild_lock(self, guild_id: int) -> AsyncGenerator[None]:
        if self._dialect != "postgresql":
            yield
            return
        # A session-level advisory lock on a connection held for the whole run: a second process
        # asking for the same guild waits; the server releases it if this process dies.
        async with self._engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            await driver.execute("SELECT pg_advisory_lock($1)", guild_id)
            try:
                yield
            finally:
                try:
                    await driver.execute("SELECT pg_advisory_unlock($1)", guild_id)
                except Exception as exc:  # the lock dies with the connection
                    _LOGGER.warning(
                        "advisory unlock failed, dropping the connection",
                        extra={"guild_id": guild_id, "error": type(exc).__name__},
                    )
                    await conn.invalidate()


if typing.TYPE_CHECKING:
    from reconciler.store.api import Store

    def _implements_store(store: SqlStore) -> Store:  # pyright: ignore[reportUnusedFunction]
        return store
