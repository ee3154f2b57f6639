"""The store's contract: what the engine, the commands and the scheduler may ask of the database."""

from __future__ import annotations

__all__ = ["ApplyResult", "GuildRecord", "ProgressCallback", "Store", "StoreStats", "SyncRun"]

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
        Scope,
        StoredFingerprints,
        StoredSnapshot,
    )

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

    async def load_fingerprints(self, guild_id: int, scope: Scope) -> StoredFingerprints:
        """The stored fingerprint of each present (active or inactive) member in scope."""
        ...

    async def load_snapshot(self, guild_id: int, scope: Scope) -> StoredSnapshot:
        """Every member row in scope (left ones too) with its links, and the roles if `scope.roles`."""
        ...

    async def apply(
        self, guild_id: int, change_set: ChangeSet, *, on_progress: ProgressCallback | None = None
    ) -> ApplyResult:
        """Write a change set: roles first, then members in batches, one transaction per batch.

        A crash loses no committed batch and re-applying converges (every write is an upsert or a
        guarded update). A batch that fails is retried member by member: the members the database
        rejects are counted and sampled, never abort the run. Errors that are not about a row
        (connection lost, database locked beyond the timeout) propagate.
        """
        ...

    async def apply_stream(
        self, guild_id: int, parts: AsyncIterable[ChangeSet], *, on_progress: ProgressCallback | None = None
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

        An 'inactive' member with activity becomes 'active'. Message content is never stored.
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

    async def mark_inactive(self, guild_id: int, *, cutoff: datetime.datetime) -> int:
        """Active members last seen (or, never seen, first seen) before `cutoff` become 'inactive'."""
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

    async def last_runs(self, guild_id: int) -> Mapping[str, SyncRun]:
        """The newest run of each kind for a guild."""
        ...

    async def count_runs(
        self, *, guild_id: int | None = None, kind: str | None = None, outcome: str | None = None
    ) -> int:
        """How many runs match (every argument is an optional filter)."""
        ...

    async def stats(self, guild_id: int, *, now: datetime.datetime) -> StoreStats:
        """Members by status, message counts over today / 7 / 30 UTC days ending at `now`, and more."""
        ...

    async def claim_slot(self, job: str, slot: str, owner: str) -> bool:
        """Claim a scheduler run slot; False when another process (or an earlier run) already has it."""
        ...

    def guild_lock(self, guild_id: int) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the guild across processes (PostgreSQL advisory lock; a no-op on SQLite)."""
        ...
