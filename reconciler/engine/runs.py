"""What a reconcile run is asked to do and what it reports: requests, progress and reports.

Every trigger (start-up, gateway events, `/sync`, the scheduler) speaks these types, so the queue can
merge requests for one guild whatever asked for them, and every run ends in the same report.
"""

from __future__ import annotations

__all__ = [
    "Outcome",
    "ProgressListener",
    "RunKind",
    "RunProgress",
    "RunReport",
    "SyncRequest",
    "Trigger",
    "event_origin",
    "merge_requests",
]

import enum
import time
import typing

import attrs

from reconciler.domain import ChangeCounts, EventOrigin, EventSource, Scope

if typing.TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence


class Trigger(enum.StrEnum):
    """Who asked: stored in `sync_runs.trigger` and used as a metric label."""

    GATEWAY = "gateway"
    SCHEDULE = "schedule"
    STARTUP = "startup"
    COMMAND = "command"


# When requests merge, the merged run is reported under the trigger a person would look for.
_TRIGGER_RANK: typing.Final = {Trigger.GATEWAY: 0, Trigger.SCHEDULE: 1, Trigger.STARTUP: 2, Trigger.COMMAND: 3}


class RunKind(enum.StrEnum):
    """What the run does: stored in `sync_runs.kind`."""

    USERS = "users"
    ROLES = "roles"
    CLEANUP = "cleanup"
    FULL = "full"
    DRIFT_CHECK = "drift_check"
    RELIST = "relist"


_KIND_RANK: typing.Final = {
    RunKind.ROLES: 0,
    RunKind.USERS: 1,
    RunKind.RELIST: 2,
    RunKind.CLEANUP: 3,
    RunKind.FULL: 4,
    RunKind.DRIFT_CHECK: 5,
}


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    PARTIAL = "partial"
    """Finished, but some members could not be written (counted and sampled in the report)."""
    REFUSED = "refused"
    """Not applied on purpose (mass-departure guard); needs a forced run."""
    FAILED = "failed"
    """Could not finish (database down, ...); retried with back-off."""
    SKIPPED = "skipped"


@attrs.frozen(kw_only=True)
class SyncRequest:
    """A request to make one guild's rows equal to Discord for a scope. It carries keys, never state."""

    guild_id: int
    scope: Scope
    trigger: Trigger
    kind: RunKind = RunKind.USERS
    requested_by: int | None = None
    force: bool = False
    """Rewrite unchanged members too (`/sync users force:true`)."""
    verify: bool = False
    """Compare full rows, not stored fingerprints: finds rows edited behind the bot's back (costs a full read)."""
    allow_departures: bool = False
    """Pass the mass-departure guard (`/sync full confirm:true`)."""
    cleanup_days: int | None = None
    """Also mark members inactive after this many days without activity, and prune dead role links."""
    confirmed_departures: frozenset[int] = frozenset()
    """Users whose departure the gateway announced; they do not count against the guard."""
    event_times: tuple[float, ...] = ()
    """Monotonic arrival time of each gateway event folded into this request (for the lag metric)."""

    def merge(self, other: SyncRequest) -> SyncRequest:
        """One request that does what both asked; the more deliberate trigger and kind win."""
        return merge_requests((self, other))


def merge_requests(requests: Sequence[SyncRequest]) -> SyncRequest:
    """One request doing what all of them asked, in one pass (a burst of 10,000 events is 10,000 requests).

    The most deliberate trigger and kind win (a person's `/sync` over a gateway hint), with that
    request's author; scopes, flags, confirmed departures and event times are united.
    """
    first = requests[0]
    if len(requests) == 1:
        return first
    user_ids: set[int] | None = set()
    roles = False
    confirmed: set[int] = set()
    event_times: list[float] = []
    days: list[int] = []
    lead = first
    for request in requests:
        if request.guild_id != first.guild_id:
            msg = f"cannot merge requests of guilds {first.guild_id} and {request.guild_id}"
            raise ValueError(msg)
        if user_ids is not None:
            if request.scope.user_ids is None:
                user_ids = None
            else:
                user_ids.update(request.scope.user_ids)
        roles = roles or request.scope.roles
        confirmed.update(request.confirmed_departures)
        event_times.extend(request.event_times)
        if request.cleanup_days is not None:
            days.append(request.cleanup_days)
        if _TRIGGER_RANK[request.trigger] > _TRIGGER_RANK[lead.trigger] or (
            request.trigger == lead.trigger and request.requested_by and not lead.requested_by
        ):
            lead = request
    return SyncRequest(
        guild_id=first.guild_id,
        scope=Scope(user_ids=None if user_ids is None else frozenset(user_ids), roles=roles),
        trigger=lead.trigger,
        kind=max((r.kind for r in requests), key=_KIND_RANK.__getitem__),
        requested_by=lead.requested_by,
        force=any(r.force for r in requests),
        verify=any(r.verify for r in requests),
        allow_departures=any(r.allow_departures for r in requests),
        cleanup_days=min(days) if days else None,
        confirmed_departures=frozenset(confirmed),
        event_times=tuple(event_times),
    )


@attrs.frozen(kw_only=True)
class RunProgress:
    """Where a run is now: shown by `/sync` while it works and to a second `/sync` that must wait."""

    guild_id: int
    kind: RunKind
    trigger: Trigger
    requested_by: int | None
    phase: str
    done: int = 0
    total: int = 0
    started_at: float = attrs.field(factory=time.monotonic)

    def describe(self) -> str:
        elapsed = time.monotonic() - self.started_at
        if self.total:
            return f"{self.phase}: {self.done:,}/{self.total:,} members ({elapsed:.0f} s)"
        return f"{self.phase} ({elapsed:.0f} s)"


ProgressListener = typing.Callable[[RunProgress], "Awaitable[None]"]
"""Called with each progress update of a run (the /sync reply edits itself from these)."""


@attrs.frozen(kw_only=True)
class RunReport:
    """The end of a run: what `/sync` shows, what `sync_runs` stores, what the metrics count."""

    guild_id: int
    kind: RunKind
    trigger: Trigger
    outcome: Outcome
    counts: ChangeCounts = attrs.field(factory=ChangeCounts)
    inactive: int = 0
    """Members marked inactive by the cleanup step."""
    links_pruned: int = 0
    errors: int = 0
    error_sample: tuple[tuple[int, str], ...] = ()
    """(user id, reason) of the first few members that failed."""
    reason: str | None = None
    """Why a run was refused or failed, in words an admin can act on."""
    duration: float = 0.0
    run_id: int | None = None

    @property
    def skipped(self) -> int:
        """Members left as they were because they already matched (the report's 'skipped')."""
        return self.counts.unchanged


def event_origin(request: SyncRequest, run_id: int | None) -> EventOrigin:
    """The source the run's history events carry (documented in docs/schema.md, `member_events`).

    The run after a relist: `relist`. A run asked for only by gateway events: `gateway` (its changes
    are what the events announced). Anything else (schedule, command, start-up) found the changes
    by looking: `repair`. Every source carries the run id.
    """
    if request.kind is RunKind.RELIST:
        return EventOrigin(source=EventSource.RELIST, run_id=run_id)
    if request.trigger is Trigger.GATEWAY:
        return EventOrigin(source=EventSource.GATEWAY, run_id=run_id)
    return EventOrigin(source=EventSource.REPAIR, run_id=run_id)
