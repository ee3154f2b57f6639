"""What a reconcile run is asked to do and what it reports: requests, progress and reports.

Every trigger (start-up, gateway events, `/sync`, the scheduler) speaks these types, so the queue can
merge requests for one guild whatever asked for them, and every run ends in the same report.
"""

from __future__ import annotations

__all__ = [
    "Outcome",
    "PendingRequest",
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
    """Monotonic arrival times of the gateway events behind this request (for the lag metric): once
    merged, each member's oldest waiting event, and the oldest of those naming no member."""

    def merge(self, other: SyncRequest) -> SyncRequest:
        """One request that does what both asked; the more deliberate trigger and kind win."""
        return merge_requests((self, other))


def merge_requests(requests: Sequence[SyncRequest]) -> SyncRequest:
    """One request doing what all of them asked (see `PendingRequest`)."""
    first = requests[0]
    if len(requests) == 1:
        return first
    pending = PendingRequest(first)
    for request in requests[1:]:
        pending.add(request)
    return pending.request()


class PendingRequest:
    """The requests waiting for one guild, folded together in place as each arrives.

    Memory grows with the distinct users waiting, not with the events: 200,000 events for 5,000 members
    hold 5,000 ids. Adding costs a set insert, never a copy of what is already waiting. The most
    deliberate trigger and kind win (a person's `/sync` over a gateway hint), with that request's
    author; scopes, flags and confirmed departures are united. Event times keep each member's oldest
    waiting event (and the oldest of the events that name no member): what the lag metric measures.
    """

    __slots__ = (
        "_allow_departures",
        "_built",
        "_confirmed",
        "_days",
        "_first_event",
        "_first_other_event",
        "_force",
        "_kind",
        "_lead",
        "_roles",
        "_user_ids",
        "_verify",
        "guild_id",
    )

    def __init__(self, first: SyncRequest) -> None:
        self.guild_id = first.guild_id
        self._lead = first
        self._kind = first.kind
        self._user_ids: set[int] | None = set()
        self._roles = False
        self._confirmed: set[int] = set()
        self._days: int | None = None
        self._force = self._verify = self._allow_departures = False
        self._first_event: dict[int, float] = {}
        self._first_other_event: float | None = None
        self._built: SyncRequest | None = None
        self.add(first)

    def add(self, request: SyncRequest) -> None:
        if request.guild_id != self.guild_id:
            msg = f"cannot merge requests of guilds {self.guild_id} and {request.guild_id}"
            raise ValueError(msg)
        self._built = None
        scoped = request.scope.user_ids
        if scoped is None:
            self._user_ids = None
        elif self._user_ids is not None:
            self._user_ids.update(scoped)
        self._roles = self._roles or request.scope.roles
        if request.confirmed_departures:
            self._confirmed.update(request.confirmed_departures)
        if request.cleanup_days is not None:
            self._days = request.cleanup_days if self._days is None else min(self._days, request.cleanup_days)
        self._force = self._force or request.force
        self._verify = self._verify or request.verify
        self._allow_departures = self._allow_departures or request.allow_departures
        if _KIND_RANK[request.kind] > _KIND_RANK[self._kind]:
            self._kind = request.kind
        lead = self._lead
        if _TRIGGER_RANK[request.trigger] > _TRIGGER_RANK[lead.trigger] or (
            request.trigger == lead.trigger and request.requested_by and not lead.requested_by
        ):
            self._lead = request
        if request.event_times:
            self._note_events(scoped, min(request.event_times))

    def absorb(self, other: PendingRequest) -> None:
        """Fold in requests that were waiting elsewhere (a run's requests going back to the queue)."""
        self.add(attrs.evolve(other.request(), event_times=()))
        for user_id, arrived in other._first_event.items():
            if arrived < self._first_event.get(user_id, arrived + 1):
                self._first_event[user_id] = arrived
        if other._first_other_event is not None:
            self._note_events(None, other._first_other_event)

    def _note_events(self, user_ids: frozenset[int] | None, arrived: float) -> None:
        if not user_ids:
            if self._first_other_event is None or arrived < self._first_other_event:
                self._first_other_event = arrived
            return
        first_event = self._first_event
        for user_id in user_ids:
            if user_id not in first_event:
                first_event[user_id] = arrived

    def request(self) -> SyncRequest:
        """The one request doing what every request added asked (built once until the next add)."""
        if self._built is None:
            events = list(self._first_event.values())
            if self._first_other_event is not None:
                events.append(self._first_other_event)
            lead = self._lead
            self._built = SyncRequest(
                guild_id=self.guild_id,
                scope=Scope(user_ids=None if self._user_ids is None else frozenset(self._user_ids), roles=self._roles),
                trigger=lead.trigger,
                kind=self._kind,
                requested_by=lead.requested_by,
                force=self._force,
                verify=self._verify,
                allow_departures=self._allow_departures,
                cleanup_days=self._days,
                confirmed_departures=frozenset(self._confirmed),
                event_times=tuple(events),
            )
        return self._built


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
    by looking: `repair`. A gateway run has no `sync_runs` row while it runs (it is summed into its
    period's row when it ends), so `run_id` is None there.
    """
    if request.kind is RunKind.RELIST:
        return EventOrigin(source=EventSource.RELIST, run_id=run_id)
    if request.trigger is Trigger.GATEWAY:
        return EventOrigin(source=EventSource.GATEWAY, run_id=run_id)
    return EventOrigin(source=EventSource.REPAIR, run_id=run_id)
