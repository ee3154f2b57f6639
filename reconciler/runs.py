"""What a reconcile run is asked to do and what it reports: requests, progress and reports.

Every trigger (start-up, gateway events, `/sync`, the scheduler) speaks these types, so the queue can
merge requests for one guild whatever asked for them, and every run ends in the same report.
"""

from __future__ import annotations

__all__ = ["Outcome", "RunKind", "RunProgress", "RunReport", "SyncRequest", "Trigger"]

import enum
import time
import typing

import attrs

from reconciler.domain import ChangeCounts, Scope


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
        if other.guild_id != self.guild_id:
            msg = f"cannot merge requests of guilds {self.guild_id} and {other.guild_id}"
            raise ValueError(msg)
        trigger = max(self.trigger, other.trigger, key=_TRIGGER_RANK.__getitem__)
        kind = max(self.kind, other.kind, key=_KIND_RANK.__getitem__)
        requested_by = other.requested_by if other.trigger == trigger and other.requested_by else self.requested_by
        days = [d for d in (self.cleanup_days, other.cleanup_days) if d is not None]
        return SyncRequest(
            guild_id=self.guild_id,
            scope=self.scope.merge(other.scope),
            trigger=trigger,
            kind=kind,
            requested_by=requested_by,
            force=self.force or other.force,
            verify=self.verify or other.verify,
            allow_departures=self.allow_departures or other.allow_departures,
            cleanup_days=min(days) if days else None,
            confirmed_departures=self.confirmed_departures | other.confirmed_departures,
            event_times=self.event_times + other.event_times,
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
