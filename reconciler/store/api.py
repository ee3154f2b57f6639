"""The store's contract: what the engine, the commands and the scheduler may ask of the database."""

from __future__ import annotations

__all__ = [
    "ApplyResult",
    "GuildRecord",
    "HistoryEntry",
    "MemberRecord",
    "ProgressCallback",
    "Store",
    "StoreStats",
    "SyncRun",
]

import logging
import typing

import attrs

from reconciler.domain import ChangeCounts

if typing.TYPE_CHECKING:
    import contextlib
    import datetime
    from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence

    from reconciler.domain import (
        ActivityBatch,
        ActivityDelta,
        ChangeSet,
        ChannelCounted,
        EventOrigin,
        Scope,
        StoredFingerprints,
        StoredSnapshot,
    )
    from reconciler.domain.counts import GuildCounts

_LOGGER: typing.Final = logging.getLogger(__name__)

ProgressCallback: typing.TypeAlias = "Callable[[int, int], Awaitable[None] | None]"
"""Called after each committed batch with (member operations done, member operations in total)."""


@attrs.define(frozen=True, kw_only=True, slots=True)
class ApplyResult:
    """What `Store.apply` actually wrote.

    `counts` holds the changes that were committed (a member whose write failed is not counted) and
    the change set's `unchanged`; `errors` how many member or role writes failed; `error_sample` the
    first few of them as (user id or role id, reason).
    """

    counts: ChangeCounts = attrs.field(factory=ChangeCounts)
    errors: int = 0
    error_sample: tuple[tuple[int, str], ...] = ()
    batches: int = 0

    @property
    def ok(self) -> bool:
        """True when every write of the change set was committed."""
        return self.errors == 0


@attrs.define(frozen=True, kw_only=True, slots=True)
class SyncRun:
    """A row of `sync_runs`: one reconcile run, its trigger and its outcome."""

    id: int
    guild_id: int
    kind: str
    trigger: str
    requested_by: int | None
    started_at: datetime.datetime
    finished_at: datetime.datetime | None
    outcome: str | None
    created: int
    updated: int
    unchanged: int
    left: int
    inactive: int
    errors: int
    error_sample: str | None
    runs: int = 1
    """Runs summed in the row: gateway runs share one row per guild, kind, outcome and period."""
    period_start: datetime.datetime | None = None
    """The period a gateway row sums (None on the row of one deliberate run)."""


@attrs.define(frozen=True, kw_only=True, slots=True)
class GuildRecord:
    """A row of `guilds`."""

    id: int
    name: str | None
    member_count: int | None
    first_seen_at: datetime.datetime
    last_reconciled_at: datetime.datetime | None
    removed_at: datetime.datetime | None


@attrs.define(frozen=True, kw_only=True, slots=True)
class StoreStats:
    """What the database says about a guild (for `/stats`, metrics and the coverage check)."""

    guild_id: int
    members_by_status: Mapping[str, int]
    """'active', 'inactive' and 'left' (zero when none)."""
    roles: int
    """Roles not deleted."""
    messages_today: int
    messages_7d: int
    messages_30d: int
    active_users_7d: int
    """Distinct members with at least one message in the last 7 days (today included)."""
    tracked_since: datetime.date | None
    """The first day with recorded activity."""
    last_reconciled_at: datetime.datetime | None

    @property
    def present_members(self) -> int:
        """Members still in the guild (active or inactive)."""
        return self.members_by_status.get("active", 0) + self.members_by_status.get("inactive", 0)


@attrs.define(frozen=True, kw_only=True, slots=True)
class HistoryEntry:
    """A row of `member_events`."""

    id: int
    observed_at: datetime.datetime
    kind: str
    old_value: str | None
    new_value: str | None
    role_id: int | None
    source: str
    run_id: int | None


@attrs.define(frozen=True, kw_only=True, slots=True)
class MemberRecord:
    """What the replica holds about one member of one guild (for `/sync stats user:`)."""

    guild_id: int
    user_id: int
    username: str
    global_name: str | None
    nickname: str | None
    status: str
    joined_at: datetime.datetime | None
    first_seen_at: datetime.datetime
    last_seen_at: datetime.datetime | None
    left_at: datetime.datetime | None
    messages_7d: int
    messages_30d: int
    role_ids: tuple[int, ...]
    premium_since: datetime.datetime | None
    communication_disabled_until: datetime.datetime | None
    pending: bool
    flags: int
    recent_events: tuple[HistoryEntry, ...]
    """The newest history events, newest first."""


class Store(typing.Protocol):
    """The database replica of Discord guilds.

    Every method is a coroutine safe to call concurrently; writes are transactional. Times are
    timezone-aware UTC datetimes. Member rows are never deleted: a member who leaves gets
    status 'left' and `left_at`; only links to roles that no longer exist are removed.
    """

    async def close(self) -> None:
        """Release the connections."""
        ...

    async def upgrade(self) -> None:
        """Migrate the database to the newest schema (Alembic head)."""
        ...

    async def ping(self) -> bool:
        """True when the database answers (for /readyz); never raises."""
        ...

    def is_unreachable(self, exc: BaseException) -> bool:
        """True when `exc`, raised by this store, says the database was out of reach or too busy.

        Such a failure says nothing about the work asked of it, so that work waits for the database
        instead of being given up after a bounded number of attempts.
        """
        ...

    async def load_fingerprints(self, guild_id: int, scope: Scope) -> StoredFingerprints:
        """The stored fingerprint of each present (active or inactive) member in scope."""
        ...

    async def load_snapshot(self, guild_id: int, scope: Scope) -> StoredSnapshot:
        """Every member row in scope (left ones too) with its links, and the roles if `scope.roles`."""
        ...

    async def apply(
        self,
        guild_id: int,
        change_set: ChangeSet,
        *,
        on_progress: ProgressCallback | None = None,
        origin: EventOrigin = ...,
    ) -> ApplyResult:
        """Write a change set: roles first, then members in batches, one transaction per batch.

        Each batch appends its members' history (`member_events`, from `origin`) in its transaction;
        created members are `joined` only once the guild has been reconciled in full (before that they
        are its first sync, which writes no event). Without `origin`: a repair without a run id.

        A crash loses no committed batch and re-applying converges (every write is an upsert or a
        guarded update). A batch that fails is retried member by member: the members the database
        rejects (a constraint, a value out of range, text it refuses) are counted and sampled, never
        abort the run. Every other error propagates and no member is retried one by one: the database
        (connection lost, locked beyond the timeout) or the code (a wrong number of bindings, a
        `TypeError`, a driver's programming or interface error).
        """
        ...

    async def apply_stream(
        self,
        guild_id: int,
        parts: AsyncIterable[ChangeSet],
        *,
        on_progress: ProgressCallback | None = None,
        origin: EventOrigin = ...,
    ) -> ApplyResult:
        """Write change sets as they are produced, as one `apply` of all of them.

        A large run hands its slices over one by one: the next slice is planned while the earlier ones
        are written, and their members fill batches together (one transaction per batch, as `apply`).
        Roles are written before the members of the same part. If `parts` raises, what was handed over
        before is written and counted, then the error propagates. Progress counts member operations,
        the total being that of the parts received so far.
        """
        ...

    async def upsert_guild(self, guild_id: int, name: str | None, member_count: int | None) -> None:
        """Record a guild the bot is in (clears `removed_at` if it had been removed)."""
        ...

    async def mark_guild_removed(self, guild_id: int) -> None:
        """The bot was removed from the guild: set `removed_at`, keep every row."""
        ...

    async def set_reconciled(self, guild_id: int, at: datetime.datetime) -> None:
        """Record the end of a successful full reconcile."""
        ...

    async def guilds(self) -> Sequence[GuildRecord]:
        """Every guild row, removed ones included."""
        ...

    async def add_activity(self, rows: Sequence[ActivityDelta]) -> None:
        """Add per-day message counts and move `last_seen_at` forward, in one transaction.

        An 'inactive' member with activity becomes 'active' (a `became_active` event, source gateway).
        Message content is never stored.
        """
        ...

    async def commit_activity(self, batch: ActivityBatch) -> None:
        """Write one activity flush in one transaction: member and channel counts, counted sets, gaps.

        Each channel's counted set is merged into the stored one (it only grows; a channel never seen
        gets a row with the batch's set). Either all of it is committed or none of it.
        """
        ...

    async def load_counted(self, guild_id: int) -> Mapping[int, ChannelCounted]:
        """The counted state of every channel of a guild that has one, by channel id."""
        ...

    async def set_channel_access(
        self, guild_id: int, channel_id: int, *, forbidden: bool, watermark_if_new: int
    ) -> None:
        """Record whether the bot may read a channel's history (a new row starts at `watermark_if_new`)."""
        ...

    async def top_channels(
        self, guild_id: int, *, now: datetime.datetime, days: int = 7, limit: int = 5
    ) -> Sequence[tuple[int, int]]:
        """The most active channels over `days` UTC days ending at `now`: (channel id, messages), busiest first."""
        ...

    async def activity_gap_count(self, guild_id: int) -> int:
        """How many gaps were given up (older than the backfill's maximum age) in the guild."""
        ...

    async def mark_inactive(self, guild_id: int, *, cutoff: datetime.datetime, origin: EventOrigin = ...) -> int:
        """Active members last seen (or, never seen, first seen) before `cutoff` become 'inactive'
        (a `became_inactive` event each, in the same transaction)."""
        ...

    async def forgotten_users(self) -> frozenset[int]:
        """The users whose personal values were erased on request: their names are never stored again."""
        ...

    async def member_record(
        self, guild_id: int, user_id: int, *, now: datetime.datetime, events: int = 10
    ) -> MemberRecord | None:
        """One member's row, roles, message counts (7 and 30 UTC days ending at `now`) and newest events."""
        ...

    async def prune_member_events(self, *, before: datetime.datetime) -> int:
        """Delete history observed before `before` (retention.member_events_days); the number deleted."""
        ...

    async def erase_left_names(self, *, left_before: datetime.datetime) -> int:
        """Erase the names of members who left before `left_before` (retention.left_member_days).

        Nicknames and guild avatars of those member rows, the values of their name events, and the
        user's names when the user is in no guild any more. The number of member and user rows erased.
        """
        ...

    async def prune_deleted_role_links(self, guild_id: int) -> int:
        """Delete links to roles marked deleted (never to roles not yet known); the number removed."""
        ...

    async def start_run(self, guild_id: int, kind: str, trigger: str, requested_by: int | None) -> int:
        """Open a `sync_runs` row; its id. `trigger` is one of command, schedule, startup, gateway."""
        ...

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
        """Close a `sync_runs` row with its outcome and counts."""
        ...

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
        """Add a finished gateway-triggered run to its period's row; the row's id.

        One row per guild, kind, outcome and period of `period_seconds` (periods aligned on the Unix
        epoch, by the finish time): `runs` and the counts are summed, `started_at` is the first run's
        start, `finished_at` the last run's end, `error_sample` the latest one given. Traffic then adds
        rows with time, not with events; commands, schedules and start-ups keep a row each.
        """
        ...

    async def last_runs(self, guild_id: int) -> Mapping[str, SyncRun]:
        """The latest run of each kind for a guild (by when it finished, or started if still running)."""
        ...

    async def prune_bookkeeping(
        self, *, runs_before: datetime.datetime, slots_before: datetime.datetime
    ) -> Mapping[str, int]:
        """Delete old bookkeeping; rows deleted per table.

        `sync_runs` rows that ended (or, unfinished, started) before `runs_before`, except the latest of
        each kind per guild; `scheduler_slots` claimed before `slots_before`. Never a member, user, role,
        link or activity row.
        """
        ...

    async def count_runs(
        self, *, guild_id: int | None = None, kind: str | None = None, outcome: str | None = None
    ) -> int:
        """How many runs match (every argument is an optional filter)."""
        ...

    async def stats(self, guild_id: int, *, now: datetime.datetime) -> StoreStats:
        """Members by status, message counts over today / 7 / 30 UTC days ending at `now`, and more."""
        ...

    async def present_counts(self, guild_id: int) -> GuildCounts:
        """Present (active or inactive) members, and how many of them hold each role not deleted.

        What Discord's own counts are compared with (`GET /guilds/{id}?with_counts=true` and
        `GET /guilds/{id}/roles/member-counts`): @everyone is left out, a role nobody holds counts 0.
        Two aggregate queries, whatever the guild's size.
        """
        ...

    async def claim_slot(self, job: str, slot: str, owner: str) -> bool:
        """Claim a scheduler run slot; False when another process (or an earlier run) already has it."""
        ...

    def guild_lock(self, guild_id: int) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the guild across processes (PostgreSQL advisory lock; a no-op on SQLite)."""
        ...
