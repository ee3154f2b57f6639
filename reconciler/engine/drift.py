"""How far the database is from hikari's cache right now, measured row by row without writing anything.

The drift check publishes it on schedule and `/sync stats` can show it on demand: one computation, so
the gauges and the command never disagree about what "drift" means. Runs trust each member's stored
fingerprint; this check does not, because a row edited behind the bot's back keeps its fingerprint.
"""

from __future__ import annotations

__all__ = ["DriftReport", "measure_drift", "publish_drift"]

import itertools
import logging
import typing

import attrs

from reconciler.domain import ChangeCounts, Scope, plan_changes
from reconciler.domain.health import DriftCounts
from reconciler.engine.forgetting import forgetting
from reconciler.engine.planning import GuildNotReadyError

if typing.TYPE_CHECKING:
    import contextlib
    import datetime
    from collections.abc import Callable, Iterable, Iterator

    from reconciler.domain import ChangeSet
    from reconciler.engine.planning import DesiredState
    from reconciler.observability.metrics import Metrics
    from reconciler.store.api import Store, StoreStats

_LOGGER: typing.Final = logging.getLogger(__name__)

# Members compared per step, cache side and database side alike: what the check holds at once is a
# slice, never the guild. Its reads take no lock, so it overlaps the full runs of a relist or cleanup,
# and in a 30-minute soak on 50,000 members those overlapping peaks, not live objects, set the
# process's resident set (the allocator keeps the arenas a peak needed). See `_slice_size`.
_SLICE_MIN: typing.Final = 5_000
_SLICE_MAX: typing.Final = 10_000
_MEMBERS_ONLY: typing.Final = Scope(user_ids=None, roles=False)


@attrs.define(frozen=True, kw_only=True, slots=True)
class DriftReport:
    """One guild's drift: what a reconcile would write now, by kind, and the coverage it implies."""

    guild_id: int
    counts: ChangeCounts
    """Members created/updated/left/rejoined, links and roles a reconcile would write; `unchanged` too."""
    drift: DriftCounts
    drifted_user_ids: frozenset[int]
    """Members whose row is missing, differs, or should be marked left or rejoined."""
    discord_members: int
    stored: StoreStats

    @property
    def coverage(self) -> float:
        """Members on Discord that the database has as present, over members on Discord."""
        if not self.discord_members:
            return 1.0
        covered = self.discord_members - self.drift.missing - self.drift.rejoined
        return max(0.0, covered / self.discord_members)


def _slice_size(members: int) -> int:
    """A tenth of the guild, from 5,000 to 10,000 members a slice.

    The check's peak is the whole guild's ids and fingerprints (two objects a member) plus one slice
    read from both sides (about 25 a member). At 50,000 members slices of 5,000 instead of 10,000
    halve the peak (139k live blocks instead of 278k on PostgreSQL) in the same time; at 1M members the
    whole-guild part is most of the peak whatever the slice, and slices of 5,000 made the check 7-21 %
    slower (docs/benchmarks.md).
    """
    return max(_SLICE_MIN, min(_SLICE_MAX, members // 10))


def _batches(values: Iterable[int], size: int) -> Iterator[list[int]]:
    iterator = iter(values)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _changed_users(changes: ChangeSet) -> set[int]:
    users = {state.user_id for state in changes.members_to_create}
    users.update(change.user_id for change in (*changes.members_to_update, *changes.members_to_rejoin))
    users.update(changes.members_to_leave)
    return users


async def measure_drift(
    guild_id: int,
    *,
    desired: DesiredState,
    store: Store,
    guild_lock: Callable[[int], contextlib.AbstractAsyncContextManager[typing.Any]],
    now: datetime.datetime,
    metrics: Metrics | None = None,
    batch_size: int | None = None,
) -> DriftReport:
    """Compare every member row, link and role of the guild with the cache; publish if `metrics` is given.

    Rows are read in batches without blocking runs; the members that differ are then compared again,
    holding the guild's lock (`guild_lock`, the one runs hold), against a fresh read of the cache, so
    a change that a run was writing meanwhile is not reported as drift. `batch_size` overrides the
    members read at a time (`_slice_size`). Raises `GuildNotReadyError` while the member list is loading
    or if it was reloaded during the check.
    """
    token = desired.ready_token(guild_id)
    if token is None:
        raise GuildNotReadyError(guild_id)
    # Forgotten users are compared as the runs write them: without their names.
    desired = forgetting(desired, await store.forgotten_users())
    stored_present = (await store.load_fingerprints(guild_id, _MEMBERS_ONLY)).fingerprints
    candidates = sorted(desired.member_ids(guild_id) | stored_present.keys())
    del stored_present
    unchanged = 0
    suspects: set[int] = set()
    for batch in _batches(candidates, batch_size or _slice_size(len(candidates))):
        scope = Scope.of_users(batch)
        cached = desired.snapshot(guild_id, scope)
        actual = await store.load_snapshot(guild_id, scope)
        changes = plan_changes(cached, actual)
        unchanged += changes.counts.unchanged
        suspects |= _changed_users(changes)
    async with guild_lock(guild_id):
        if desired.ready_token(guild_id) != token:
            raise GuildNotReadyError(guild_id)
        recheck = Scope.of_users(suspects, roles=True)
        fresh = desired.snapshot(guild_id, recheck)
        actual = await store.load_snapshot(guild_id, recheck)
    if desired.ready_token(guild_id) != token:
        raise GuildNotReadyError(guild_id)
    final = plan_changes(fresh, actual)
    counts = final.counts + ChangeCounts(unchanged=unchanged)
    report = DriftReport(
        guild_id=guild_id,
        counts=counts,
        drift=DriftCounts.from_counts(counts),
        drifted_user_ids=frozenset(_changed_users(final)),
        discord_members=desired.member_count(guild_id),
        stored=await store.stats(guild_id, now=now),
    )
    if metrics is not None:
        publish_drift(metrics, report)
    return report


def publish_drift(metrics: Metrics, report: DriftReport) -> None:
    """Set the drift, coverage and member-count gauges of the report's guild."""
    guild = str(report.guild_id)
    for kind, value in report.drift.by_kind().items():
        metrics.drift.labels(guild=guild, kind=kind).set(value)
    metrics.coverage_ratio.labels(guild=guild).set(report.coverage)
    metrics.discord_members.labels(guild=guild).set(report.discord_members)
    for status, count in report.stored.members_by_status.items():
        metrics.database_members.labels(guild=guild, status=status).set(count)
