"""The hot paths below SQLAlchemy: member batches and member reads on the raw driver connection.

A reconcile of a large guild writes millions of rows; SQLAlchemy's per-row processing costs about as
much as the database itself, so these paths hand plain tuples to the driver: SQLite statements of
thousands of rows each; PostgreSQL `COPY` for new rows and arrays expanded by `unnest` for upserts.
Everything else in the store goes through SQLAlchemy Core. The store contract tests run every path on
both backends.
"""

from __future__ import annotations

__all__ = [
    "BatchCutter",
    "BatchHistory",
    "BulkBackend",
    "MemberBatch",
    "MemberRow",
    "PostgresBulk",
    "PreparedBatch",
    "SqliteBulk",
    "bulk_backend",
    "sqlite_time",
]

import abc
import asyncio
import collections
import datetime
import functools
import itertools
import json
import logging
import operator
import sqlite3
import threading
import typing

import attrs

from reconciler.domain import MemberChange, MemberState, fingerprint
from reconciler.domain.history import EVENT_WIDTH, add_change_events, add_created_events
from reconciler.store.connect import AUTOCHECKPOINT, BULK_AUTOCHECKPOINT, BULK_CACHE_KIB, CACHE_KIB

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Iterator, Sequence

    from reconciler.domain import ChangeSet, EventOrigin

_LOGGER: typing.Final = logging.getLogger(__name__)


_Member = typing.TypeVar("_Member", MemberState, MemberChange)

_SORT_FROM: typing.Final = 20_000
ANALYZE_AFTER: typing.Final = 50_000
"""Member rows written by one apply after which PostgreSQL's statistics are refreshed."""


def _by_user_id(items: Sequence[_Member]) -> Sequence[_Member]:
    # Inserting in key order keeps each b-tree page hot: in hash or arrival order a large cold sync
    # is several times slower (SQLite, 100k members: 3 s sorted, 11 s shuffled). Small sets fit in
    # the page cache either way.
    if len(items) < _SORT_FROM:
        return items
    ids = [item.user_id for item in items]
    if all(a < b for a, b in itertools.pairwise(ids)):
        return items
    return sorted(items, key=operator.attrgetter("user_id"))


@attrs.define(frozen=True, kw_only=True, slots=True)
class MemberBatch:
    """The member writes of one transaction: slices of a change set's member operations."""

    creates: Sequence[MemberState] = ()
    """New members: user row, member row and a link per role id."""
    updates: Sequence[MemberChange] = ()
    rejoins: Sequence[MemberChange] = ()
    """Like updates, and the member row's status and left_at are reset."""
    leaves: Sequence[int] = ()
    refreshes: Sequence[tuple[int, int]] = ()

    def __len__(self) -> int:
        return len(self.creates) + len(self.updates) + len(self.rejoins) + len(self.leaves) + len(self.refreshes)

    def changes(self) -> list[MemberChange]:
        """Updated and rejoined members (both rewrite the user and member rows)."""
        return [*self.updates, *self.rejoins]

    def created_links(self) -> Iterator[tuple[int, int]]:
        """(user id, role id) of every created member's roles."""
        for member in self.creates:
            user_id = member.user_id
            for role_id in member.role_ids:
                yield user_id, role_id

    def user_writes(self) -> Sequence[MemberState]:
        """The members whose `users` row is written: created ones, and changed ones whose user changed."""
        changed = [change.state for change in self.changes() if change.user_changed]
        return [*self.creates, *changed] if changed else self.creates

    def changed_links(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(links added, links removed) of the updated and rejoined members."""
        added: list[tuple[int, int]] = []
        removed: list[tuple[int, int]] = []
        for change in self.changes():
            user_id = change.user_id
            added.extend((user_id, role_id) for role_id in change.roles_added)
            removed.extend((user_id, role_id) for role_id in change.roles_removed)
        return added, removed

    def split(self) -> Iterator[tuple[int, MemberBatch]]:
        """One batch per member, with its user id (to find the member a database rejects)."""
        for state in self.creates:
            yield state.user_id, MemberBatch(creates=(state,))
        for change in self.updates:
            yield change.user_id, MemberBatch(updates=(change,))
        for change in self.rejoins:
            yield change.user_id, MemberBatch(rejoins=(change,))
        for user_id in self.leaves:
            yield user_id, MemberBatch(leaves=(user_id,))
        for refresh in self.refreshes:
            yield refresh[0], MemberBatch(refreshes=(refresh,))


class BatchCutter:
    """Cuts the member writes of a stream of change sets into batches of `size`, in the order they come.

    Change sets smaller than a batch (the slices of a large run, a scoped run's few members) fill
    batches together, so a transaction always carries `size` members until the stream ends. Slices
    only: no per-member work here, a cold sync cuts a million members into batches.
    """

    _KINDS: typing.Final = ("creates", "updates", "rejoins", "leaves", "refreshes")

    def __init__(self, size: int) -> None:
        self._size = size
        # (kind, items, start): what is waiting of each change set's groups, without copying them.
        self._waiting: collections.deque[tuple[str, Sequence[typing.Any], int]] = collections.deque()
        self._count = 0

    def add(self, change_set: ChangeSet) -> Iterator[MemberBatch]:
        """Take a change set's member writes; the batches that are full now."""
        groups: tuple[Sequence[typing.Any], ...] = (
            _by_user_id(change_set.members_to_create),
            _by_user_id(change_set.members_to_update),
            _by_user_id(change_set.members_to_rejoin),
            change_set.members_to_leave,
            change_set.fingerprints_to_refresh,
        )
        for kind, items in zip(self._KINDS, groups, strict=True):
            if items:
                self._waiting.append((kind, items, 0))
                self._count += len(items)
        while self._count >= self._size:
            yield self._cut(self._size)

    def rest(self) -> MemberBatch | None:
        """What is left once the stream ends, as one last (smaller) batch."""
        return self._cut(self._count) if self._count else None

    def _cut(self, size: int) -> MemberBatch:
        taken: dict[str, list[typing.Any]] = {}
        room = size
        while room:
            kind, items, start = self._waiting[0]
            piece = items[start : start + room]
            taken.setdefault(kind, []).extend(piece)
            room -= len(piece)
            if start + len(piece) == len(items):
                self._waiting.popleft()
            else:
                self._waiting[0] = (kind, items, start + len(piece))
        self._count -= size
        return MemberBatch(**{kind: _in_key_order(kind, items) for kind, items in taken.items()})


_USER_ID_OF: typing.Final[dict[str, Callable[[typing.Any], int] | None]] = {
    "creates": operator.attrgetter("user_id"),
    "updates": operator.attrgetter("user_id"),
    "rejoins": operator.attrgetter("user_id"),
    "leaves": None,
    "refreshes": operator.itemgetter(0),
}


def _in_key_order(kind: str, items: list[typing.Any]) -> list[typing.Any]:
    # A batch made of several change sets, or of one in arrival order: its rows in key order keep the
    # transaction on few b-tree pages (a batch is at most a few thousand items: cheap to sort).
    key = _USER_ID_OF[kind]
    keys = items if key is None else list(map(key, items))
    if all(a < b for a, b in itertools.pairwise(keys)):
        return items
    return sorted(items, key=key)


@attrs.define(frozen=True, kw_only=True, slots=True)
class BatchHistory:
    """The `member_events` rows of one batch, written in its transaction.

    `events` holds those of its created, updated and rejoined members (see `reconciler.domain.history`),
    flat: `EVENT_WIDTH` values per event (user_id, kind, old_value, new_value, role_id), no object per
    event. The departures' `left` and `role_removed` rows are selected by the database itself from the
    rows the batch marks left (only it knows which links they hold).
    """

    origin: EventOrigin
    events: list[typing.Any] = attrs.field(factory=list[typing.Any])

    @classmethod
    def of(cls, batch: MemberBatch, origin: EventOrigin, *, record_joins: bool) -> BatchHistory:
        """The history of `batch`; `record_joins` once the guild has a baseline (a full reconcile)."""
        events: list[typing.Any] = []
        if record_joins:
            for state in batch.creates:
                add_created_events(events, state)
        for change in batch.updates:
            add_change_events(events, change, rejoined=False)
        for change in batch.rejoins:
            add_change_events(events, change, rejoined=True)
        return cls(origin=origin, events=events)

    @property
    def count(self) -> int:
        """How many events `events` holds."""
        return len(self.events) // EVENT_WIDTH


def has_extras(member: MemberState) -> bool:
    """Whether any of the fields admins ask about is set (most members: none, and a shorter row)."""
    return (
        member.premium_since is not None
        or member.communication_disabled_until is not None
        or member.pending
        or member.flags != 0
        or member.guild_avatar_hash is not None
    )


def _split_extras(states: Sequence[MemberState]) -> tuple[Sequence[MemberState], list[MemberState]]:
    # The rows without extras keep the short statement of before (a cold sync binds no more values).
    extras = [m for m in states if has_extras(m)]
    if not extras:
        return states, extras
    return [m for m in states if not has_extras(m)], extras


@attrs.define(frozen=True, kw_only=True, slots=True)
class PreparedBatch:
    """A batch turned into driver calls: (kind, statement or table, arguments), in order."""

    steps: list[tuple[str, str, typing.Any]]
    copy: frozenset[str] = frozenset()
    """Tables that created members' rows go to by a plain bulk insert (a repeat fails: unique violation)."""


MemberRow: typing.TypeAlias = tuple[
    int,
    str,
    str | None,
    str | None,
    bool,
    str | None,
    datetime.datetime | None,
    str,
    int,
    datetime.datetime | None,
    datetime.datetime | None,
    bool,
    int,
    str | None,
]
"""(user_id, username, global_name, avatar_hash, is_bot, nickname, joined_at, status, fingerprint,
premium_since, communication_disabled_until, pending, flags, guild_avatar_hash)."""


async def _pause() -> None:
    # Let the event loop run between two pieces of row building: the previous batch's transaction,
    # in flight on the database, sends its next statement meanwhile (see SqlStore.apply).
    await asyncio.sleep(0)


class BulkBackend(abc.ABC):
    """Backend-specific bulk statements, run on the driver's own connection object.

    Writing a batch is two steps so that they can overlap where the database is another process:
    `prepare` builds the rows (CPU, in this thread) while the previous batch's `send` runs.
    """

    pipeline: bool = False
    """Whether `prepare` may run while a `send` is in flight on the same connection."""
    queues_sends: bool = False
    """Whether a `send` may start before the previous one is done: the driver runs them in order."""

    @abc.abstractmethod
    async def prepare(
        self,
        guild_id: int,
        batch: MemberBatch,
        now: datetime.datetime,
        *,
        copy: Collection[str] = (),
        history: BatchHistory | None = None,
    ) -> PreparedBatch:
        """The driver calls that write `batch`, and its `history` in the same transaction (None: no event).

        `copy` names the tables ('users', 'members') where created members may be written by a plain
        bulk insert, which fails (unique violation, nothing written) if a row exists already; the
        caller then prepares the batch again without that table.
        """

    @abc.abstractmethod
    async def send(self, driver: typing.Any, prepared: PreparedBatch) -> None:
        """Run a prepared batch in one transaction of its own (committed on return, rolled back on error)."""

    async def write_members(
        self,
        driver: typing.Any,
        guild_id: int,
        batch: MemberBatch,
        now: datetime.datetime,
        *,
        copy: Collection[str] = (),
        history: BatchHistory | None = None,
    ) -> None:
        """Prepare and send `batch`."""
        await self.send(driver, await self.prepare(guild_id, batch, now, copy=copy, history=history))

    async def begin_bulk(self, driver: typing.Any) -> None:  # noqa: B027 - optional hook
        """Before a run of batches on this connection."""

    async def end_bulk(self, driver: typing.Any, written: int) -> None:  # noqa: B027 - optional hook
        """After a run of batches on this connection (also after a failure); `written` member rows."""

    @abc.abstractmethod
    async def read_fingerprints(
        self, driver: typing.Any, guild_id: int, user_ids: Collection[int] | None
    ) -> tuple[dict[int, int], int]:
        """user id -> fingerprint of the present members (all of the guild when `user_ids` is None), and
        how many members are marked left, read in one transaction."""

    @abc.abstractmethod
    async def read_members(
        self, driver: typing.Any, guild_id: int, user_ids: Collection[int] | None
    ) -> tuple[list[MemberRow], Iterable[tuple[int, int]]]:
        """Member rows (left ones too) and their (user id, role id) links (to be iterated once), read in one
        transaction."""


def sqlite_time(value: datetime.datetime | None) -> str | None:
    """The text SQLAlchemy's SQLite DateTime stores (naive UTC, always with microseconds)."""
    if value is None:
        return None
    if value.tzinfo is not datetime.UTC and value.utcoffset():
        value = value.astimezone(datetime.UTC)
    # %-formatting of the fields: half the cost of replace(tzinfo=None).isoformat(), once per member written.
    return _SQLITE_TIME % (
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


_SQLITE_TIME: typing.Final = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


def _from_sqlite_time(value: str | None) -> datetime.datetime | None:
    return None if value is None else datetime.datetime.fromisoformat(value).replace(tzinfo=datetime.UTC)


_MEMBER_SET: typing.Final = (
    "nickname = excluded.nickname, joined_at = excluded.joined_at, fingerprint = excluded.fingerprint, "
    "updated_at = excluded.updated_at"
)
# A row without extras resets them (a boost that ended, a timeout lifted); a row with them sets them.
_PLAIN_SET: typing.Final = (
    f"{_MEMBER_SET}, premium_since = NULL, communication_disabled_until = NULL, pending = false, flags = 0, "
    "guild_avatar_hash = NULL"
)
_FULL_SET: typing.Final = (
    f"{_MEMBER_SET}, premium_since = excluded.premium_since, "
    "communication_disabled_until = excluded.communication_disabled_until, pending = excluded.pending, "
    "flags = excluded.flags, guild_avatar_hash = excluded.guild_avatar_hash"
)
# Only rejoins touch `status`: SQLite maintains an index whenever its column is SET, equal or not.
_REJOIN: typing.Final = ", status = 'active', left_at = NULL"
_SELECT_MEMBERS: typing.Final = (
    "SELECT m.user_id, u.username, u.global_name, u.avatar_hash, u.is_bot, m.nickname, m.joined_at, "
    "m.status, m.fingerprint, m.premium_since, m.communication_disabled_until, m.pending, m.flags, "
    "m.guild_avatar_hash FROM members m JOIN users u ON u.id = m.user_id WHERE m.guild_id = {guild}"
)
_EVENT_COLUMNS: typing.Final = (
    "guild_id",
    "user_id",
    "kind",
    "old_value",
    "new_value",
    "role_id",
    "observed_at",
    "source",
    "run_id",
)
_INSERT_EVENTS: typing.Final = f"INSERT INTO member_events ({', '.join(_EVENT_COLUMNS)}) "
# A departure's events, selected from the rows the batch is about to mark left ({among} names them).
_LEFT_EVENTS: typing.Final = (
    f"{_INSERT_EVENTS}SELECT guild_id, user_id, 'left', NULL, NULL, NULL, {{now}}, {{source}}, {{run}} "
    "FROM members WHERE guild_id = {guild} AND status <> 'left' AND {among} ORDER BY user_id"
)
_LEFT_ROLE_EVENTS: typing.Final = (
    f"{_INSERT_EVENTS}SELECT mr.guild_id, mr.user_id, 'role_removed', NULL, NULL, mr.role_id, {{now}}, "
    "{source}, {run} FROM member_roles mr JOIN members m ON m.guild_id = mr.guild_id AND m.user_id = mr.user_id "
    "WHERE m.guild_id = {guild} AND m.status <> 'left' AND {among} ORDER BY mr.user_id, mr.role_id"
)


_MAX_VARIABLES: typing.Final = 32_000
"""Parameters per statement: below SQLite's limit (32,766 since 3.32)."""
_PAD_TO: typing.Final = 1024
"""Rows a padded statement is rounded up to (see `SqliteBulk._multirow`)."""


def _row_counts(rows: int, per: int) -> Iterator[int]:
    """Rows of each statement that writes `rows` rows, at most `per` a statement.

    Full statements of `per`; a rest of `_PAD_TO` rows or more (a large run's last) in one; a smaller
    rest in powers of two from `_PAD_TO` / 2 down to 1. So everyday runs use at most eleven texts a
    statement (the full one and ten powers of two), and never more than ten statements for a rest.
    """
    for _ in range(rows // per):
        yield per
    rest = rows % per
    if rest >= _PAD_TO:
        yield rest
        return
    size = _PAD_TO // 2
    while rest:
        if rest >= size:
            yield size
            rest -= size
        size //= 2


def _padded(rows: list[tuple[typing.Any, ...]], per: int) -> list[tuple[typing.Any, ...]]:
    """`rows` with their last row repeated up to a round count: to `_PAD_TO`'s multiples in statements
    of `per` rows, to a power of two below `_PAD_TO`."""
    rest = len(rows) % per
    if not rest:
        return rows
    target = min(per, -(-rest // _PAD_TO) * _PAD_TO) if rest >= _PAD_TO else 1 << (rest - 1).bit_length()
    return rows + [rows[-1]] * (target - rest)


@attrs.frozen
class _Statement:
    """A SQLite write, as text for one row (`one`) and for many (`many`).

    Values every row shares (the guild, the time) are bound once, as ?1, ?2, ...; a row's own values
    follow them (`row` marks them `{}`; `many` says how they are numbered). Binding the shared values
    once per statement, not once per row, spares a third of the parameters sqlite3 binds (with the GIL
    held) and Python builds.
    """

    one: str
    """The statement for one row: `executemany` (SQLite before 3.33), and a member written alone."""
    head: str
    row: str
    tail: str
    shared: int

    @functools.lru_cache(maxsize=256)  # noqa: B019 - a few sizes per statement, statements live forever
    def many(self, rows: int) -> str:
        """The statement for `rows` rows (built once per size; sqlite3 caches its compilation by text).

        Only the first row numbers its own values; later rows use a bare `?`, which SQLite numbers one
        past the largest number so far. SQLite's cost per `?NNN` grows with the numbers it has seen:
        numbering every row made compiling quadratic (7,000 rows: 0.9 s instead of 10 ms, paid by
        each run of a new size, which live updates produce all the time).
        """
        own = self.row.count("{}")
        first = self.row.format(*(f"?{self.shared + 1 + i}" for i in range(own)))
        rest = self.row.format(*("?" * own))
        return f"{self.head}{', '.join([first, *[rest] * (rows - 1)])}{self.tail}"

    @property
    def per_statement(self) -> int:
        """Rows that fit under SQLite's limit of numbered parameters."""
        return max(1, (_MAX_VARIABLES - self.shared) // self.row.count("{}"))


_USERS_CONFLICT: typing.Final = (
    " ON CONFLICT (id) DO UPDATE SET username = excluded.username, global_name = excluded.global_name, "
    "avatar_hash = excluded.avatar_hash, is_bot = excluded.is_bot, updated_at = excluded.updated_at "
    "WHERE users.username IS NOT excluded.username OR users.global_name IS NOT excluded.global_name "
    "OR users.avatar_hash IS NOT excluded.avatar_hash OR users.is_bot IS NOT excluded.is_bot"
)
_USERS_INSERT: typing.Final = "INSERT INTO users (id, username, global_name, avatar_hash, is_bot, updated_at) VALUES "
_MEMBERS_INSERT: typing.Final = (
    "INSERT INTO members (guild_id, user_id, nickname, joined_at, first_seen_at, status, updated_at, "
    "fingerprint) VALUES "
)
_MEMBERS_FULL_INSERT: typing.Final = (
    "INSERT INTO members (guild_id, user_id, nickname, joined_at, first_seen_at, status, updated_at, "
    "fingerprint, premium_since, communication_disabled_until, pending, flags, guild_avatar_hash) VALUES "
)


def _members_statement(on_conflict: str) -> _Statement:
    tail = f" ON CONFLICT (guild_id, user_id) DO UPDATE SET {on_conflict}"
    return _Statement(
        one=f"{_MEMBERS_INSERT}(?1, ?3, ?4, ?5, ?2, 'active', ?2, ?6){tail}",
        head=_MEMBERS_INSERT,
        row="(?1, {}, {}, {}, ?2, 'active', ?2, {})",
        tail=tail,
        shared=2,
    )


def _members_full_statement(on_conflict: str) -> _Statement:
    tail = f" ON CONFLICT (guild_id, user_id) DO UPDATE SET {on_conflict}"
    return _Statement(
        one=f"{_MEMBERS_FULL_INSERT}(?1, ?3, ?4, ?5, ?2, 'active', ?2, ?6, ?7, ?8, ?9, ?10, ?11){tail}",
        head=_MEMBERS_FULL_INSERT,
        row="(?1, {}, {}, {}, ?2, 'active', ?2, {}, {}, {}, {}, {}, {})",
        tail=tail,
        shared=2,
    )


class SqliteBulk(BulkBackend):
    """aiosqlite: plain tuples inside BEGIN IMMEDIATE ... COMMIT, thousands of rows per statement.

    Row by row (`executemany`) SQLite is stepped once per row and takes the GIL back between rows. That
    is fine while nothing else runs and ruinous while another thread keeps the GIL busy, as the event
    loop does when hikari parses member chunks or a burst of updates: every row then waits for a GIL
    switch (60,000 rows took 77 s instead of 0.2 s). With up to 32,000 parameters per statement SQLite
    holds no GIL for thousands of rows at a time; alone it is also faster (member role links: 0.9 s
    instead of 1.4 s for 600,000). It also lets the next batch be built while SQLite writes this one
    (a pipeline), which row by row would only compete with the driver's thread.

    SQLite before 3.33 (no UPDATE ... FROM) gets the row-by-row statements.
    """

    def __init__(self) -> None:
        self.multirow = sqlite3.sqlite_version_info >= (3, 33)
        self.pipeline = self.multirow
        self.queues_sends = self.multirow

    _UPSERT_USERS: typing.Final = _Statement(
        one=f"{_USERS_INSERT}(?2, ?3, ?4, ?5, ?6, ?1){_USERS_CONFLICT}",
        head=_USERS_INSERT,
        row="({}, {}, {}, {}, {}, ?1)",
        tail=_USERS_CONFLICT,
        shared=1,
    )
    _UPSERT_MEMBERS: typing.Final = _members_statement(_PLAIN_SET)
    _REJOIN_MEMBERS: typing.Final = _members_statement(_PLAIN_SET + _REJOIN)
    _UPSERT_FULL_MEMBERS: typing.Final = _members_full_statement(_FULL_SET)
    _REJOIN_FULL_MEMBERS: typing.Final = _members_full_statement(_FULL_SET + _REJOIN)
    _EVENTS: typing.Final = _Statement(
        one=f"{_INSERT_EVENTS}VALUES (?1, ?5, ?6, ?7, ?8, ?9, ?2, ?3, ?4)",
        head=f"{_INSERT_EVENTS}VALUES ",
        row="(?1, {}, {}, {}, {}, {}, ?2, ?3, ?4)",
        tail="",
        shared=4,
    )
    _LEFT_EVENTS: typing.Final = _LEFT_EVENTS.format(
        now="?2", source="?3", run="?4", guild="?1", among="user_id IN (SELECT value FROM json_each(?5))"
    )
    _LEFT_ROLE_EVENTS: typing.Final = _LEFT_ROLE_EVENTS.format(
        now="?2", source="?3", run="?4", guild="?1", among="m.user_id IN (SELECT value FROM json_each(?5))"
    )
    _ADD_LINKS: typing.Final = _Statement(
        one="INSERT INTO member_roles (guild_id, user_id, role_id) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        head="INSERT INTO member_roles (guild_id, user_id, role_id) VALUES ",
        row="(?1, {}, {})",
        tail=" ON CONFLICT DO NOTHING",
        shared=1,
    )
    # A list of constant rows: `IN (SELECT ... FROM v)` keeps SQLite on the index (`IN (VALUES ...)` scans).
    _REMOVE_LINKS: typing.Final = _Statement(
        one="DELETE FROM member_roles WHERE guild_id = ?1 AND user_id = ?2 AND role_id = ?3",
        head="WITH v(guild_id, user_id, role_id) AS (VALUES ",
        row="(?1, {}, {})",
        tail=") DELETE FROM member_roles WHERE (guild_id, user_id, role_id) IN "
        "(SELECT guild_id, user_id, role_id FROM v)",
        shared=1,
    )
    _LEAVE: typing.Final = _Statement(
        one="UPDATE members SET status = 'left', left_at = ?1, updated_at = ?1 "
        "WHERE guild_id = ?2 AND user_id = ?3 AND status <> 'left'",
        head="WITH v(left_at, updated_at, guild_id, user_id) AS (VALUES ",
        row="(?1, ?1, ?2, {})",
        tail=") UPDATE members SET status = 'left', left_at = v.left_at, updated_at = v.updated_at FROM v "
        "WHERE members.guild_id = v.guild_id AND members.user_id = v.user_id AND members.status <> 'left'",
        shared=2,
    )
    _REFRESH: typing.Final = _Statement(
        one="UPDATE members SET fingerprint = ?2 WHERE guild_id = ?1 AND user_id = ?3",
        head="WITH v(fingerprint, guild_id, user_id) AS (VALUES ",
        row="({}, ?1, {})",
        tail=") UPDATE members SET fingerprint = v.fingerprint FROM v "
        "WHERE members.guild_id = v.guild_id AND members.user_id = v.user_id",
        shared=1,
    )
    # `+status` keeps the planner on the primary key (a scan of the guild's rows) rather than the
    # (guild_id, status) index, which would cost a lookup per member.
    # Two JSON arrays in one row, not a row per member: rows are fetched one by one, each taking the
    # GIL back, which crawls while another thread keeps it busy (the event loop in a burst). 1M
    # members: 0.6 s either way alone; beside a thread spinning in Python, 23 s as rows, 0.6 s as arrays.
    _FINGERPRINTS: typing.Final = (
        "SELECT json_group_array(user_id), json_group_array(fingerprint) FROM members "
        "WHERE guild_id = ? AND +status <> 'left'"
    )
    _LEFT_ROWS: typing.Final = "SELECT count(*) FROM members WHERE guild_id = ? AND status = 'left'"
    _AMONG: typing.Final = " AND {column} IN (SELECT value FROM json_each(?))"

    async def prepare(
        self,
        guild_id: int,
        batch: MemberBatch,
        now: datetime.datetime,
        *,
        copy: Collection[str] = (),
        history: BatchHistory | None = None,
    ) -> PreparedBatch:
        stamp = sqlite_time(now)
        writes: list[tuple[_Statement, tuple[typing.Any, ...], list[tuple[typing.Any, ...]]]] = []
        # is_bot as an int: sqlite3 binds exact ints directly, a bool goes through its adapter lookup.
        users = [
            (m.user_id, m.username, m.global_name, m.avatar_hash, 1 if m.is_bot else 0) for m in batch.user_writes()
        ]
        if users:
            writes.append((self._UPSERT_USERS, (stamp,), users))
        for statement, full_statement, every in (
            (self._UPSERT_MEMBERS, self._UPSERT_FULL_MEMBERS, [*batch.creates, *(c.state for c in batch.updates)]),
            (self._REJOIN_MEMBERS, self._REJOIN_FULL_MEMBERS, [change.state for change in batch.rejoins]),
        ):
            if not every:
                continue
            if self.pipeline:
                await _pause()
            states, extras = _split_extras(every)
            if states:
                members = [(m.user_id, m.nickname, sqlite_time(m.joined_at), fingerprint(m)) for m in states]
                writes.append((statement, (guild_id, stamp), members))
            if extras:
                full = [
                    (
                        m.user_id,
                        m.nickname,
                        sqlite_time(m.joined_at),
                        fingerprint(m),
                        sqlite_time(m.premium_since),
                        sqlite_time(m.communication_disabled_until),
                        1 if m.pending else 0,
                        m.flags,
                        m.guild_avatar_hash,
                    )
                    for m in extras
                ]
                writes.append((full_statement, (guild_id, stamp), full))
        if self.pipeline:
            await _pause()
        link_adds, link_removes = batch.changed_links()
        if link_removes:
            writes.append((self._REMOVE_LINKS, (guild_id,), link_removes))
        links = [*batch.created_links(), *link_adds]
        if links:
            writes.append((self._ADD_LINKS, (guild_id,), links))
        if batch.refreshes:
            writes.append((self._REFRESH, (guild_id,), [(fp, u) for u, fp in batch.refreshes]))
        steps = self._steps(writes)
        if history is not None:
            origin = (guild_id, stamp, history.origin.source.value, history.origin.run_id)
            if batch.leaves:
                among = json.dumps(sorted(batch.leaves))
                steps.append(("one", self._LEFT_EVENTS, (*origin, among)))
                steps.append(("one", self._LEFT_ROLE_EVENTS, (*origin, among)))
            if history.events:
                steps.extend(self._event_steps(origin, history.events))
        if batch.leaves:
            steps.extend(self._steps([(self._LEAVE, (stamp, guild_id), [(u,) for u in batch.leaves])]))
        return PreparedBatch(steps=steps)

    def _event_steps(self, origin: tuple[typing.Any, ...], flat: list[typing.Any]) -> list[tuple[str, str, typing.Any]]:
        # Statements of _PAD_TO events and round numbers below (see `_multirow`); the values are
        # already flat, in the statement's order: sliced, not rebuilt.
        if not self.multirow:
            rows = [(*origin, *flat[i : i + EVENT_WIDTH]) for i in range(0, len(flat), EVENT_WIDTH)]
            return [("many", self._EVENTS.one, rows)]
        steps: list[tuple[str, str, typing.Any]] = []
        start = 0
        for count in _row_counts(len(flat) // EVENT_WIDTH, _PAD_TO):
            part = flat[start : start + count * EVENT_WIDTH]
            start += count * EVENT_WIDTH
            steps.append(("one", self._EVENTS.many(count), [*origin, *part]))
        return steps

    def _steps(
        self, writes: list[tuple[_Statement, tuple[typing.Any, ...], list[tuple[typing.Any, ...]]]]
    ) -> list[tuple[str, str, typing.Any]]:
        if not self.multirow:
            return [("many", st.one, [(*shared, *row) for row in rows]) for st, shared, rows in writes]
        return [step for write in writes for step in self._multirow(*write)]

    def _multirow(
        self, statement: _Statement, shared: tuple[typing.Any, ...], rows: list[tuple[typing.Any, ...]]
    ) -> Iterator[tuple[str, str, typing.Any]]:
        # sqlite3 keeps each connection's last 128 statements compiled, and compiling one of thousands
        # of rows takes 10 ms: a text for every row count filled each pooled connection's cache with
        # them (a SQLite soak's floor of SQLite memory grew 0.5 MB a minute) and a cold sync of 1M
        # members paid 2 s to compile. So a statement holds a round number of rows (`_row_counts`);
        # not row by row below some count: each row would wait for the GIL while the loop parses a
        # burst (live member updates 15 % slower, measured). Role links are padded up to a round
        # number instead: a repeated link is a no-op there.
        if statement is self._ADD_LINKS:
            rows = _padded(rows, statement.per_statement)
        start = 0
        for count in _row_counts(len(rows), statement.per_statement):
            part = rows[start : start + count]
            start += count
            arguments = list(shared)
            arguments.extend(itertools.chain.from_iterable(part))
            yield ("one", statement.many(count), arguments)

    async def begin_bulk(self, driver: typing.Any) -> None:
        # Every checkpoint fsyncs; during a bulk run checkpoint every ~400 MiB of log instead of 40,
        # then once at the end (a 1% drift of 1M members: 4 s -> 2 s on this VM's disk).
        await driver.execute(f"PRAGMA wal_autocheckpoint={BULK_AUTOCHECKPOINT}")
        await driver.execute(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")

    async def end_bulk(self, driver: typing.Any, written: int) -> None:
        if driver.in_transaction:  # a batch cancelled between BEGIN and its end
            await driver.rollback()
        await driver.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT}")
        await driver.execute(f"PRAGMA cache_size=-{CACHE_KIB}")  # frees the pages above it at once
        await driver.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def send(self, driver: typing.Any, prepared: PreparedBatch) -> None:
        # The whole transaction is one call into aiosqlite's thread. Statement by statement, each
        # statement waits for the event loop to send the next one, and the loop is busy building the
        # next batch: SQLite sat idle between statements (a cold sync of 1M members: 25 s -> 19 s).
        run_in_thread = getattr(driver, "_execute", None)
        if run_in_thread is not None:
            abandoned = threading.Event()
            try:
                await run_in_thread(_write_transaction, driver, prepared.steps, abandoned)
            except asyncio.CancelledError:
                abandoned.set()  # a batch still queued behind another never starts
                raise
            return
        await driver.execute("BEGIN IMMEDIATE")
        try:
            for kind, statement, arguments in prepared.steps:
                if kind == "one":
                    await driver.execute(statement, arguments)
                else:
                    await driver.executemany(statement, arguments)
            await driver.commit()
        except BaseException:
            await driver.rollback()
            raise

    async def read_fingerprints(
        self, driver: typing.Any, guild_id: int, user_ids: Collection[int] | None
    ) -> tuple[dict[int, int], int]:
        present, left = self._FINGERPRINTS, self._LEFT_ROWS
        params: tuple[typing.Any, ...] = (guild_id,)
        if user_ids is not None:
            present += self._AMONG.format(column="user_id")
            left += self._AMONG.format(column="user_id")
            params = (guild_id, json.dumps(sorted(user_ids)))
        await driver.execute("BEGIN")
        try:
            ((ids, fingerprints),) = await driver.execute_fetchall(present, params)
            ((left_rows,),) = await driver.execute_fetchall(left, params)
        finally:
            await driver.rollback()
        return dict(zip(json.loads(ids), json.loads(fingerprints), strict=True)), left_rows

    async def read_members(
        self, driver: typing.Any, guild_id: int, user_ids: Collection[int] | None
    ) -> tuple[list[MemberRow], Iterable[tuple[int, int]]]:
        members_sql = _SELECT_MEMBERS.format(guild="?")
        links_sql = "SELECT user_id, role_id FROM member_roles WHERE guild_id = ?"
        params: tuple[typing.Any, ...] = (guild_id,)
        if user_ids is not None:
            members_sql += self._AMONG.format(column="m.user_id")
            links_sql += self._AMONG.format(column="user_id")
            params = (guild_id, json.dumps(sorted(user_ids)))
        await driver.execute("BEGIN")
        try:
            rows = await driver.execute_fetchall(members_sql, params)
            links = await driver.execute_fetchall(links_sql, params)
        finally:
            await driver.rollback()
        members: list[MemberRow] = [
            (
                row[0],
                row[1],
                row[2],
                row[3],
                bool(row[4]),
                row[5],
                _from_sqlite_time(row[6]),
                row[7],
                row[8],
                _from_sqlite_time(row[9]),
                _from_sqlite_time(row[10]),
                bool(row[11]),
                row[12],
                row[13],
            )
            for row in rows
        ]
        return members, links


class _AbandonedError(Exception):
    """The caller stopped waiting for this batch: roll it back (no one will count it)."""


def _write_transaction(
    driver: typing.Any, steps: Sequence[tuple[str, str, typing.Any]], abandoned: threading.Event
) -> None:
    """One batch on aiosqlite's own thread: BEGIN IMMEDIATE, every statement, COMMIT (ROLLBACK on error).

    A batch abandoned by its caller before it committed is rolled back (or never started).
    """
    if abandoned.is_set():
        return
    connection: sqlite3.Connection = driver._conn
    connection.execute("BEGIN IMMEDIATE")
    try:
        for kind, statement, arguments in steps:
            if abandoned.is_set():
                raise _AbandonedError
            if kind == "one":
                connection.execute(statement, arguments)
            else:
                connection.executemany(statement, arguments)
        connection.commit()
    except BaseException:
        connection.rollback()
        raise


class PostgresBulk(BulkBackend):
    """asyncpg: COPY for new members, else one statement per table with rows as arrays (`unnest`)."""

    pipeline: bool = True

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
    _INSERT_MEMBERS: typing.Final = (
        "INSERT INTO members (guild_id, user_id, nickname, joined_at, first_seen_at, status, updated_at, "
        "fingerprint) "
        "SELECT $1, m.user_id, m.nickname, m.joined_at, $5, 'active', $5, m.fingerprint "
        "FROM unnest($2::bigint[], $3::text[], $4::timestamptz[], $6::bigint[]) "
        "AS m(user_id, nickname, joined_at, fingerprint) "
    )
    _INSERT_FULL_MEMBERS: typing.Final = (
        "INSERT INTO members (guild_id, user_id, nickname, joined_at, first_seen_at, status, updated_at, "
        "fingerprint, premium_since, communication_disabled_until, pending, flags, guild_avatar_hash) "
        "SELECT $1, m.user_id, m.nickname, m.joined_at, $5, 'active', $5, m.fingerprint, m.premium_since, "
        "m.communication_disabled_until, m.pending, m.flags, m.guild_avatar_hash "
        "FROM unnest($2::bigint[], $3::text[], $4::timestamptz[], $6::bigint[], $7::timestamptz[], "
        "$8::timestamptz[], $9::boolean[], $10::bigint[], $11::text[]) "
        "AS m(user_id, nickname, joined_at, fingerprint, premium_since, communication_disabled_until, pending, "
        "flags, guild_avatar_hash) "
    )
    _UPSERT_MEMBERS: typing.Final = f"{_INSERT_MEMBERS}ON CONFLICT (guild_id, user_id) DO UPDATE SET {_PLAIN_SET}"
    _REJOIN_MEMBERS: typing.Final = (
        f"{_INSERT_MEMBERS}ON CONFLICT (guild_id, user_id) DO UPDATE SET {_PLAIN_SET}{_REJOIN}"
    )
    _UPSERT_FULL_MEMBERS: typing.Final = (
        f"{_INSERT_FULL_MEMBERS}ON CONFLICT (guild_id, user_id) DO UPDATE SET {_FULL_SET}"
    )
    _REJOIN_FULL_MEMBERS: typing.Final = (
        f"{_INSERT_FULL_MEMBERS}ON CONFLICT (guild_id, user_id) DO UPDATE SET {_FULL_SET}{_REJOIN}"
    )
    # Event writers take this transaction lock, so that event ids become visible in id order (a
    # consumer reading `id > :last` never skips a row committed late); the two-key form keeps it
    # apart from the guild locks (one-key advisory locks). Only batches that write events take it.
    _EVENTS_LOCK: typing.Final = "SELECT pg_advisory_xact_lock(1919248229, 17)"
    _EVENTS: typing.Final = (
        f"{_INSERT_EVENTS}SELECT $1, e.user_id, e.kind, e.old_value, e.new_value, e.role_id, $2, $3, $4 "
        "FROM unnest($5::bigint[], $6::text[], $7::text[], $8::text[], $9::bigint[]) WITH ORDINALITY "
        "AS e(user_id, kind, old_value, new_value, role_id, n) ORDER BY e.n"
    )
    _LEFT_EVENTS: typing.Final = _LEFT_EVENTS.format(
        now="$2", source="$3", run="$4", guild="$1", among="user_id = ANY($5::bigint[])"
    )
    _LEFT_ROLE_EVENTS: typing.Final = _LEFT_ROLE_EVENTS.format(
        now="$2", source="$3", run="$4", guild="$1", among="m.user_id = ANY($5::bigint[])"
    )
    _NOTIFY: typing.Final = "SELECT pg_notify('reconciler_member_events', (SELECT max(id) FROM member_events)::text)"
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
    # Two arrays, not a row a member: asyncpg builds a Record for every row, a third of what a whole
    # guild's read would hold at its peak (the two aggregates see the rows in the same order).
    _FINGERPRINTS: typing.Final = (
        "SELECT coalesce(array_agg(user_id), '{}'), coalesce(array_agg(fingerprint), '{}') FROM members "
        "WHERE guild_id = $1 AND status <> 'left'"
    )
    _LINKS: typing.Final = (
        "SELECT coalesce(array_agg(user_id), '{}'), coalesce(array_agg(role_id), '{}') FROM member_roles "
        "WHERE guild_id = $1"
    )
    _LEFT_ROWS: typing.Final = "SELECT count(*) FROM members WHERE guild_id = $1 AND status = 'left'"
    _USER_COLUMNS: typing.Final = ("id", "username", "global_name", "avatar_hash", "is_bot", "updated_at")
    _MEMBER_COLUMNS: typing.Final = (
        "guild_id",
        "user_id",
        "nickname",
        "joined_at",
        "first_seen_at",
        "status",
        "updated_at",
        "fingerprint",
    )
    _FULL_MEMBER_COLUMNS: typing.Final = (
        *_MEMBER_COLUMNS,
        "premium_since",
        "communication_disabled_until",
        "pending",
        "flags",
        "guild_avatar_hash",
    )

    async def prepare(
        self,
        guild_id: int,
        batch: MemberBatch,
        now: datetime.datetime,
        *,
        copy: Collection[str] = (),
        history: BatchHistory | None = None,
    ) -> PreparedBatch:
        steps: list[tuple[str, str, typing.Any]] = []
        recording = history is not None and bool(batch.leaves or history.events)
        if recording:
            # First: every transaction that writes events takes this lock before any row lock, so
            # two of them never wait for each other's rows while holding it (no deadlock).
            steps.append(("execute", self._EVENTS_LOCK, ()))
        creates = batch.creates
        copied = frozenset(copy) & {"users", "members"} if creates else frozenset[str]()
        updated = [change.state for change in batch.updates]
        rejoined = [change.state for change in batch.rejoins]
        if "users" in copied:
            users_rows = [(m.user_id, m.username, m.global_name, m.avatar_hash, m.is_bot, now) for m in creates]
            steps.append(("copy", "users", (self._USER_COLUMNS, users_rows)))
            await _pause()
            users = [change.state for change in batch.changes() if change.user_changed]
        else:
            users = batch.user_writes()
        if users:
            arrays = (
                [m.user_id for m in users],
                [m.username for m in users],
                [m.global_name for m in users],
                [m.avatar_hash for m in users],
                [m.is_bot for m in users],
                now,
            )
            steps.append(("execute", self._UPSERT_USERS, arrays))
            await _pause()
        link_adds, link_removes = batch.changed_links()
        if "members" in copied:
            plain, extras = _split_extras(creates)
            members = [
                (guild_id, m.user_id, m.nickname, m.joined_at, now, "active", now, fingerprint(m)) for m in plain
            ]
            steps.append(("copy", "members", (self._MEMBER_COLUMNS, members)))
            if extras:
                full = [
                    (
                        guild_id,
                        m.user_id,
                        m.nickname,
                        m.joined_at,
                        now,
                        "active",
                        now,
                        fingerprint(m),
                        m.premium_since,
                        m.communication_disabled_until,
                        m.pending,
                        m.flags,
                        m.guild_avatar_hash,
                    )
                    for m in extras
                ]
                steps.append(("copy", "members", (self._FULL_MEMBER_COLUMNS, full)))
            await _pause()
            created = [(guild_id, u, r) for u, r in batch.created_links()]
            if created:
                steps.append(("copy", "member_roles", (("guild_id", "user_id", "role_id"), created)))
            await _pause()
        else:
            updated = [*creates, *updated]
            link_adds = [*batch.created_links(), *link_adds]
        for statement, full_statement, every in (
            (self._UPSERT_MEMBERS, self._UPSERT_FULL_MEMBERS, updated),
            (self._REJOIN_MEMBERS, self._REJOIN_FULL_MEMBERS, rejoined),
        ):
            if not every:
                continue
            states, extras = _split_extras(every)
            if states:
                arguments = (
                    guild_id,
                    [m.user_id for m in states],
                    [m.nickname for m in states],
                    [m.joined_at for m in states],
                    now,
                    [fingerprint(m) for m in states],
                )
                steps.append(("execute", statement, arguments))
            if extras:
                full_arguments = (
                    guild_id,
                    [m.user_id for m in extras],
                    [m.nickname for m in extras],
                    [m.joined_at for m in extras],
                    now,
                    [fingerprint(m) for m in extras],
                    [m.premium_since for m in extras],
                    [m.communication_disabled_until for m in extras],
                    [m.pending for m in extras],
                    [m.flags for m in extras],
                    [m.guild_avatar_hash for m in extras],
                )
                steps.append(("execute", full_statement, full_arguments))
            await _pause()
        if link_removes:
            removes = (guild_id, [u for u, _ in link_removes], [r for _, r in link_removes])
            steps.append(("execute", self._REMOVE_LINKS, removes))
        if link_adds:
            adds = (guild_id, [u for u, _ in link_adds], [r for _, r in link_adds])
            steps.append(("execute", self._ADD_LINKS, adds))
        if batch.refreshes:
            refreshes = (guild_id, [u for u, _ in batch.refreshes], [f for _, f in batch.refreshes])
            steps.append(("execute", self._REFRESH, refreshes))
        if recording and history is not None:
            origin = (guild_id, now, history.origin.source.value, history.origin.run_id)
            if batch.leaves:
                leaving = sorted(batch.leaves)
                steps.append(("execute", self._LEFT_EVENTS, (*origin, leaving)))
                steps.append(("execute", self._LEFT_ROLE_EVENTS, (*origin, leaving)))
            if history.events:
                flat = history.events
                columns = tuple(flat[i::EVENT_WIDTH] for i in range(EVENT_WIDTH))
                steps.append(("execute", self._EVENTS, (*origin, *columns)))
            steps.append(("execute", self._NOTIFY, ()))
        if batch.leaves:
            steps.append(("execute", self._LEAVE, (guild_id, now, list(batch.leaves))))
        return PreparedBatch(steps=steps, copy=copied)

    async def begin_bulk(self, driver: typing.Any) -> None:
        # Same durability as SQLite's synchronous=NORMAL: a crash of the bot loses no committed batch;
        # only a crash of the server itself may lose its last few hundred milliseconds of commits.
        await driver.execute("SET synchronous_commit = off")

    async def end_bulk(self, driver: typing.Any, written: int) -> None:
        if driver.is_in_transaction():  # a batch cancelled between BEGIN and its end
            await driver.execute("ROLLBACK")
        await driver.execute("RESET synchronous_commit")
        if written >= ANALYZE_AFTER:
            # Fresh statistics now rather than at autovacuum's next pass: without them, reads of a
            # few thousand dirty members right after a cold sync plan as whole-guild scans (5x slower).
            await driver.execute("ANALYZE users, members, member_roles")

    async def send(self, driver: typing.Any, prepared: PreparedBatch) -> None:
        async with driver.transaction():
            for kind, target, arguments in prepared.steps:
                if kind == "copy":
                    columns, records = arguments
                    await driver.copy_records_to_table(target, columns=columns, records=records)
                else:
                    await driver.execute(target, *arguments)

    async def read_fingerprints(
        self, driver: typing.Any, guild_id: int, user_ids: Collection[int] | None
    ) -> tuple[dict[int, int], int]:
        present, left = self._FINGERPRINTS, self._LEFT_ROWS
        params: tuple[typing.Any, ...] = (guild_id,)
        if user_ids is not None:
            present += " AND user_id = ANY($2::bigint[])"
            left += " AND user_id = ANY($2::bigint[])"
            params = (guild_id, sorted(user_ids))
        async with driver.transaction(isolation="repeatable_read", readonly=True):
            ids, fingerprints = await driver.fetchrow(present, *params)
            left_rows = await driver.fetchval(left, *params)
        return dict(zip(ids, fingerprints, strict=True)), left_rows

    async def read_members(
        self, driver: typing.Any, guild_id: int, user_ids: Collection[int] | None
    ) -> tuple[list[MemberRow], Iterable[tuple[int, int]]]:
        members_sql = _SELECT_MEMBERS.format(guild="$1")
        links_sql = self._LINKS
        params: tuple[typing.Any, ...] = (guild_id,)
        if user_ids is not None:
            members_sql += " AND m.user_id = ANY($2::bigint[])"
            links_sql += " AND user_id = ANY($2::bigint[])"
            params = (guild_id, sorted(user_ids))
        async with driver.transaction(isolation="repeatable_read", readonly=True):
            rows = await driver.fetch(members_sql, *params)
            link_users, link_roles = await driver.fetchrow(links_sql, *params)
        # asyncpg's Records index like the tuples they stand for: no copy a member.
        return typing.cast("list[MemberRow]", rows), zip(link_users, link_roles, strict=True)


def bulk_backend(dialect_name: str) -> BulkBackend:
    """The bulk statements for 'sqlite' or 'postgresql'."""
    if dialect_name == "sqlite":
        return SqliteBulk()
    if dialect_name == "postgresql":
        return PostgresBulk()
    msg = f"unsupported database: {dialect_name}"
    raise ValueError(msg)
