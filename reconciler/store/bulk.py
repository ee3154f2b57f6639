"""The hot paths below SQLAlchemy: member batches and fingerprint reads on the raw driver connection.

A reconcile of a large guild writes millions of rows; SQLAlchemy's per-row processing costs about as
much as the database itself, so these paths hand plain tuples (SQLite `executemany`) or arrays
(PostgreSQL `unnest`) to the driver. Everything else in the store goes through SQLAlchemy Core.
"""

from __future__ import annotations

__all__ = ["BulkBackend", "MemberBatch", "MemberOp", "PostgresBulk", "SqliteBulk", "bulk_backend"]

import abc
import datetime
import enum
import logging
import typing

import attrs

from reconciler.domain import MemberChange, MemberState, fingerprint

if typing.TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Iterator

    from reconciler.domain import ChangeSet

_LOGGER: typing.Final = logging.getLogger(__name__)


class MemberOp(enum.Enum):
    """What happens to one member row."""

    CREATE = "create"
    UPDATE = "update"
    REJOIN = "rejoin"
    LEAVE = "leave"
    REFRESH = "refresh"


Operation: typing.TypeAlias = "tuple[MemberOp, MemberState | MemberChange | int | tuple[int, int]]"


def member_operations(change_set: ChangeSet) -> Iterator[Operation]:
    """Every member write of a change set, lazily (a cold sync holds a million of them)."""
    for state in change_set.members_to_create:
        yield MemberOp.CREATE, state
    for change in change_set.members_to_update:
        yield MemberOp.UPDATE, change
    for change in change_set.members_to_rejoin:
        yield MemberOp.REJOIN, change
    for user_id in change_set.members_to_leave:
        yield MemberOp.LEAVE, user_id
    for refresh in change_set.fingerprints_to_refresh:
        yield MemberOp.REFRESH, refresh


def operation_user_id(operation: Operation) -> int:
    """The user id an operation is about (for error samples)."""
    _, payload = operation
    if isinstance(payload, MemberState):
        return payload.user_id
    if isinstance(payload, MemberChange):
        return payload.user_id
    if isinstance(payload, tuple):
        return payload[0]
    return payload


@attrs.define(kw_only=True, slots=True)
class MemberBatch:
    """The rows one transaction writes for a run of member operations."""

    upserts: list[MemberState] = attrs.field(factory=list[MemberState])
    """Created, updated and rejoined members: user row, member row (status/left_at reset for rejoins)."""
    link_adds: list[tuple[int, int]] = attrs.field(factory=list[tuple[int, int]])
    link_removes: list[tuple[int, int]] = attrs.field(factory=list[tuple[int, int]])
    leaves: list[int] = attrs.field(factory=list[int])
    refreshes: list[tuple[int, int]] = attrs.field(factory=list[tuple[int, int]])

    @classmethod
    def of(cls, operations: Iterable[Operation]) -> MemberBatch:
        """Group operations by the statement that writes them."""
        batch = cls()
        for kind, payload in operations:
            if isinstance(payload, MemberState):
                batch.upserts.append(payload)
                user_id = payload.user_id
                batch.link_adds.extend((user_id, role_id) for role_id in payload.role_ids)
            elif isinstance(payload, MemberChange):
                batch.upserts.append(payload.state)
                user_id = payload.user_id
                batch.link_adds.extend((user_id, role_id) for role_id in payload.roles_added)
                batch.link_removes.extend((user_id, role_id) for role_id in payload.roles_removed)
            elif kind is MemberOp.LEAVE:
                batch.leaves.append(typing.cast("int", payload))
            else:
                batch.refreshes.append(typing.cast("tuple[int, int]", payload))
        return batch


class BulkBackend(abc.ABC):
    """Backend-specific bulk statements, run on the driver's own connection object."""

    @abc.abstractmethod
    async def write_members(
        self, driver: typing.Any, guild_id: int, batch: MemberBatch, now: datetime.datetime
    ) -> None:
        """Write a batch in one transaction of its own (committed on return, rolled back on error)."""

    @abc.abstractmethod
    async def read_fingerprints(
        self, driver: typing.Any, guild_id: int, user_ids: Collection[int] | None
    ) -> dict[int, int]:
        """user id -> fingerprint of the present members (all of the guild when `user_ids` is None)."""


def _chunks(values: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def sqlite_time(value: datetime.datetime | None) -> str | None:
    """The text SQLAlchemy's SQLite DateTime stores (naive UTC, always with microseconds)."""
    if value is None:
        return None
    if value.utcoffset():
        value = value.astimezone(datetime.UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


class SqliteBulk(BulkBackend):
    """aiosqlite: `executemany` of plain tuples inside BEGIN IMMEDIATE ... COMMIT."""

    _UPSERT_USERS: typing.Final = (
        "INSERT INTO users (id, username, global_name, avatar_hash, is_bot, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET username = excluded.username, global_name = excluded.global_name, "
        "avatar_hash = excluded.avatar_hash, is_bot = excluded.is_bot, updated_at = excluded.updated_at "
        "WHERE users.username IS NOT excluded.username OR users.global_name IS NOT excluded.global_name "
        "OR users.avatar_hash IS NOT excluded.avatar_hash OR users.is_bot IS NOT excluded.is_bot"
    )
    _UPSERT_MEMBERS: typing.Final = (
        "INSERT INTO members (guild_id, user_id, nickname, joined_at, first_seen_at, status, updated_at, "
        "fingerprint) VALUES (?, ?, ?, ?, ?, 'active', ?, ?) "
        "ON CONFLICT (guild_id, user_id) DO UPDATE SET nickname = excluded.nickname, "
        "joined_at = excluded.joined_at, fingerprint = excluded.fingerprint, updated_at = excluded.updated_at, "
        "status = CASE WHEN members.status = 'left' THEN 'active' ELSE members.status END, left_at = NULL"
    )
    _ADD_LINKS: typing.Final = (
        "INSERT INTO member_roles (guild_id, user_id, role_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
    )
    _REMOVE_LINKS: typing.Final = "DELETE FROM member_roles WHERE guild_id = ? AND user_id = ? AND role_id = ?"
    _LEAVE: typing.Final = (
        "UPDATE members SET status = 'left', left_at = ?, updated_at = ? "
        "WHERE guild_id = ? AND user_id = ? AND status <> 'left'"
    )
    _REFRESH: typing.Final = "UPDATE members SET fingerprint = ? WHERE guild_id = ? AND user_id = ?"
    # `+status` keeps the planner on the primary key (a scan of the guild's rows) rather than the
    # (guild_id, status) index, which would cost a lookup per member.
    _FINGERPRINTS: typing.Final = "SELECT user_id, fingerprint FROM members WHERE guild_id = ? AND +status <> 'left'"
    _ID_CHUNK: typing.Final = 900

    async def write_members(
        self, driver: typing.Any, guild_id: int, batch: MemberBatch, now: datetime.datetime
    ) -> None:
        stamp = sqlite_time(now)
        await driver.execute("BEGIN IMMEDIATE")
        try:
            if batch.upserts:
                await driver.executemany(
                    self._UPSERT_USERS,
                    [(m.user_id, m.username, m.global_name, m.avatar_hash, m.is_bot, stamp) for m in batch.upserts],
                )
                await driver.executemany(
                    self._UPSERT_MEMBERS,
                    [
                        (guild_id, m.user_id, m.nickname, sqlite_time(m.joined_at), stamp, stamp, fingerprint(m))
                        for m in batch.upserts
                    ],
                )
            if batch.link_removes:
                await driver.executemany(self._REMOVE_LINKS, [(guild_id, u, r) for u, r in batch.link_removes])
            if batch.link_adds:
                await driver.executemany(self._ADD_LINKS, [(guild_id, u, r) for u, r in batch.link_adds])
            if batch.leaves:
                await driver.executemany(self._LEAVE, [(stamp, stamp, guild_id, u) for u in batch.leaves])
            if batch.refreshes:
                await driver.executemany(self._REFRESH, [(fp, guild_id, u) for u, fp in batch.refreshes])
            await driver.commit()
        except BaseException:
            await driver.rollback()
            raise

    async def read_fingerprints(
        self, driver: typing.Any, guild_id: int, user_ids: Collection[int] | None
    ) -> dict[int, int]:
        if user_ids is None:
            return dict(await driver.execute_fetchall(self._FINGERPRINTS, (guild_id,)))
        found: dict[int, int] = {}
        for chunk in _chunks(list(user_ids), self._ID_CHUNK):
            sql = f"{self._FINGERPRINTS} AND user_id IN ({','.join('?' * len(chunk))})"
            found.update(await driver.execute_fetchall(sql, (guild_id, *chunk)))
        return found


class PostgresBulk(BulkBackend):
    """asyncpg: one statement per table and batch, rows passed as arrays and expanded by `unnest`."""

    _UPSERT_USERS: typing.Final = (
        "INSERT INTO users (id, username, global_name, avatar_hash, is_bot, updated_at) "
        "SELECT u.id, u.username, u.global_name, u.avatar_hash, u.is_bot, $6 "
        "FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::boolean[]) "
        "AS u(id, username, global_name, avatar_hash, is_bot) "
        "ON CONFLICT (id) DO UPDATE SET username = excluded.username, global_name = excluded.global_name, "
        "avatar_hash = excluded.avatar_hash, is_bot = excluded.is_bot, updated_at = excluded.updated_at "
        "WHERE (users.username, users.global_name, users.avatar_hash, users.is_bot) IS DISTINCT FROM "
        "(excluded.username, excluded.global_name, excluded.avatar_hash, excluded.is_bot)"
    )
    _UPSERT_MEMBERS: typing.Final = (
        "INSERT INTO members (guild_id, user_id, nickname, joined_at, first_seen_at, status, updated_at, "
        "fingerprint) "
        "SELECT $1, m.user_id, m.nickname, m.joined_at, $5, 'active', $5, m.fingerprint "
        "FROM unnest($2::bigint[], $3::text[], $4::timestamptz[], $6::bigint[]) "
        "AS m(user_id, nickname, joined_at, fingerprint) "
        "ON CONFLICT (guild_id, user_id) DO UPDATE SET nickname = excluded.nickname, "
        "joined_at = excluded.joined_at, fingerprint = excluded.fingerprint, updated_at = excluded.updated_at, "
        "status = CASE WHEN members.status = 'left' THEN 'active' ELSE members.status END, left_at = NULL"
    )
    _ADD_LINKS: typing.Final = (
        "INSERT INTO member_roles (guild_id, user_id, role_id) "
        "SELECT $1, l.user_id, l.role_id FROM unnest($2::bigint[], $3::bigint[]) AS l(user_id, role_id) "
        "ON CONFLICT DO NOTHING"
    )
    _REMOVE_LINKS: typing.Final = (
        "DELETE FROM member_roles mr USING unnest($2::bigint[], $3::bigint[]) AS l(user_id, role_id) "
        "WHERE mr.guild_id = $1 AND mr.user_id = l.user_id AND mr.role_id = l.role_id"
    )
    _LEAVE: typing.Final = (
        "UPDATE members SET status = 'left', left_at = $2, updated_at = $2 "
        "WHERE guild_id = $1 AND user_id = ANY($3::bigint[]) AND status <> 'left'"
    )
    _REFRESH: typing.Final = (
        "UPDATE members m SET fingerprint = r.fingerprint "
        "FROM unnest($2::bigint[], $3::bigint[]) AS r(user_id, fingerprint) "
        "WHERE m.guild_id = $1 AND m.user_id = r.user_id"
    )
    _FINGERPRINTS: typing.Final = "SELECT user_id, fingerprint FROM members WHERE guild_id = $1 AND status <> 'left'"
    _ID_CHUNK: typing.Final = 20_000

    async def write_members(
        self, driver: typing.Any, guild_id: int, batch: MemberBatch, now: datetime.datetime
    ) -> None:
        async with driver.transaction():
            if batch.upserts:
                members = batch.upserts
                await driver.execute(
                    self._UPSERT_USERS,
                    [m.user_id for m in members],
                    [m.username for m in members],
                    [m.global_name for m in members],
                    [m.avatar_hash for m in members],
                    [m.is_bot for m in members],
                    now,
                )
                await driver.execute(
                    self._UPSERT_MEMBERS,
                    guild_id,
                    [m.user_id for m in members],
                    [m.nickname for m in members],
                    [m.joined_at for m in members],
                    now,
                    [fingerprint(m) for m in members],
                )
            if batch.link_removes:
                await driver.execute(
                    self._REMOVE_LINKS,
                    guild_id,
                    [u for u, _ in batch.link_removes],
                    [r for _, r in batch.link_removes],
                )
            if batch.link_adds:
                await driver.execute(
                    self._ADD_LINKS, guild_id, [u for u, _ in batch.link_adds], [r for _, r in batch.link_adds]
                )
            if batch.leaves:
                await driver.execute(self._LEAVE, guild_id, now, batch.leaves)
            if batch.refreshes:
                await driver.execute(
                    self._REFRESH, guild_id, [u for u, _ in batch.refreshes], [f for _, f in batch.refreshes]
                )

    async def read_fingerprints(
        self, driver: typing.Any, guild_id: int, user_ids: Collection[int] | None
    ) -> dict[int, int]:
        if user_ids is None:
            return dict(await driver.fetch(self._FINGERPRINTS, guild_id))
        found: dict[int, int] = {}
        for chunk in _chunks(list(user_ids), self._ID_CHUNK):
            found.update(await driver.fetch(f"{self._FINGERPRINTS} AND user_id = ANY($2::bigint[])", guild_id, chunk))
        return found


def bulk_backend(dialect_name: str) -> BulkBackend:
    """The bulk statements for 'sqlite' or 'postgresql'."""
    if dialect_name == "sqlite":
        return SqliteBulk()
    if dialect_name == "postgresql":
        return PostgresBulk()
    msg = f"unsupported database: {dialect_name}"
    raise ValueError(msg)
