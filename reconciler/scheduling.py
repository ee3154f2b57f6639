"""Scheduled jobs: the drift check, the count audit, the relist and the nightly cleanup, each slot run once.

APScheduler 3 fires the jobs in this process; the database decides which process does the work. Each
fire is named by its scheduled time (without jitter), and each guild of that fire is a slot claimed
in `scheduler_slots` (unique on job + slot) before the work starts, so two processes that overlap
during a rolling restart, or share shards by mistake, never run one slot twice. A process only works
on the guilds its own shards delivered (those are the only ones in its cache).
"""

from __future__ import annotations

__all__ = [
    "CLEANUP",
    "COUNT_AUDIT",
    "DRIFT_CHECK",
    "RELIST",
    "GuildOutcome",
    "GuildRun",
    "JobFailedError",
    "JobOutcome",
    "JobReport",
    "JobSpec",
    "Retention",
    "Scheduler",
    "default_owner",
    "scheduled_jobs",
    "slot_key",
    "slot_time",
]

import asyncio
import copy
import datetime
import enum
import logging
import os
import socket
import time
import typing
import uuid
import zoneinfo

import attrs
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from reconciler.cron import crontab_trigger
from reconciler.domain import ChangeCounts, Scope
from reconciler.domain.wording import counted
from reconciler.engine.count_audit import COUNT_AUDIT_KIND, measure_counts, publish_counts
from reconciler.engine.drift import measure_drift
from reconciler.engine.planning import GuildNotReadyError
from reconciler.engine.runs import Outcome, RunKind, SyncRequest, Trigger

if typing.TYPE_CHECKING:
    import contextlib
    from collections.abc import Awaitable, Callable, Iterable, Sequence

    from apscheduler.triggers.base import BaseTrigger

    from reconciler.config import RetentionSettings, ScheduleSettings, SyncSettings
    from reconciler.domain.counts import CountMismatch
    from reconciler.engine.count_audit import DiscordCounts
    from reconciler.engine.planning import DesiredState
    from reconciler.engine.queue import SyncQueue
    from reconciler.engine.runs import RunReport
    from reconciler.observability.metrics import Metrics
    from reconciler.store.api import Store

_LOGGER: typing.Final = logging.getLogger(__name__)

DRIFT_CHECK: typing.Final = "drift_check"
RELIST: typing.Final = "relist"
CLEANUP: typing.Final = "cleanup"
COUNT_AUDIT: typing.Final = COUNT_AUDIT_KIND

# Interval fire times are counted from here, so every process computes the same ones.
_INTERVAL_ORIGIN: typing.Final = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
_STOP_GRACE_SECONDS: typing.Final = 5.0
_DRIFT_CONCURRENCY: typing.Final = 2
_CLEANUP_CONCURRENCY: typing.Final = 4
# Relists pace themselves per shard; this only bounds how many shards relist at once.
_RELIST_CONCURRENCY: typing.Final = 16
_COUNT_AUDIT_CONCURRENCY: typing.Final = 4
# How long a count difference may be events still in flight (gateway, queue, write; p99 lag is under 1 s).
_COUNT_AUDIT_SETTLE_SECONDS: typing.Final = 5.0
# After a relist that left a count difference, the next one for that guild waits this long, doubling.
_UNREPAIRED_BACKOFF: typing.Final = datetime.timedelta(hours=1)
_UNREPAIRED_BACKOFF_MAX: typing.Final = datetime.timedelta(hours=24)

# ---------------------------------------------------------------------------------------------------
# Slots
# ---------------------------------------------------------------------------------------------------


def _next_fire(
    trigger: BaseTrigger, previous: datetime.datetime | None, now: datetime.datetime
) -> datetime.datetime | None:
    return typing.cast("datetime.datetime | None", trigger.get_next_fire_time(previous, now))  # pyright: ignore[reportUnknownMemberType]


def slot_time(
    trigger: BaseTrigger, now: datetime.datetime, *, lookback: datetime.timedelta
) -> datetime.datetime | None:
    """The latest fire time of `trigger` (without jitter) in (now - lookback, now], or None.

    A fire runs at its scheduled time plus jitter plus any delay up to the misfire grace time, so
    with `lookback` covering those, every process finds the same scheduled time for the same fire.
    """
    latest: datetime.datetime | None = None
    fire = _next_fire(trigger, None, now - lookback)
    for _ in range(100_000):
        if fire is None or fire > now:
            break
        latest = fire
        fire = _next_fire(trigger, fire, fire + datetime.timedelta(microseconds=1))
    return latest


def slot_key(scheduled: datetime.datetime, guild_id: int) -> str:
    """`scheduler_slots.slot` for one guild of one fire: its scheduled time in UTC and the guild."""
    when = scheduled.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f"{when}/{guild_id}"


# ---------------------------------------------------------------------------------------------------
# Jobs and their reports
# ---------------------------------------------------------------------------------------------------


class JobFailedError(Exception):
    """A guild's part of a job did not do its work (the reason is the message)."""


class GuildOutcome(enum.StrEnum):
    DONE = "done"
    FAILED = "failed"
    CLAIMED_ELSEWHERE = "claimed_elsewhere"
    """Another process (or an earlier fire of this one) already claimed the slot."""
    NOT_READY = "not_ready"
    """The guild's member list was loading; the next fire (or its own start-up run) covers it."""
    NOT_RUN = "not_run"
    """The scheduler was stopping."""


class JobOutcome(enum.StrEnum):
    """The `outcome` label of `reconciler_scheduler_job_runs`."""

    SUCCESS = "success"
    FAILED = "failed"
    """At least one guild failed."""
    CLAIMED_ELSEWHERE = "claimed_elsewhere"
    """Every guild's slot was claimed by another process: the work was done, just not here."""
    SKIPPED = "skipped"
    """No guild was ready (or the scheduler was stopping)."""


@attrs.define(frozen=True, kw_only=True, slots=True)
class GuildRun:
    guild_id: int
    outcome: GuildOutcome
    detail: str = ""


@attrs.define(frozen=True, kw_only=True, slots=True)
class JobReport:
    """One fire (or on-demand run) of a job over this process's guilds."""

    job: str
    outcome: JobOutcome
    guilds: tuple[GuildRun, ...]
    scheduled_for: datetime.datetime | None
    """The fire's scheduled time; None for an on-demand run (no slot is claimed)."""
    duration: float
    after: str = ""
    """What the job's once-per-fire step did (the cleanup's retention: rows pruned per table)."""

    def guild(self, guild_id: int) -> GuildRun | None:
        return next((run for run in self.guilds if run.guild_id == guild_id), None)


GuildWork: typing.TypeAlias = "Callable[[int], Awaitable[str]]"
"""A job's work for one guild: returns a short summary, raises `JobFailedError` (or anything) on failure."""


@attrs.define(frozen=True, kw_only=True, slots=True)
class JobSpec:
    name: str
    trigger: BaseTrigger
    """When the job fires, without jitter: slots are named after these times."""
    work: GuildWork
    jitter: float = 0.0
    """Random delay (seconds, at most) added to each fire; must stay below the interval."""
    concurrency: int = 1
    """Guilds worked on at once."""
    after: Callable[[], Awaitable[str]] | None = None
    """Work done once per fire, after the guilds' (not per guild): returns a short summary."""


def _outcome_of(runs: Sequence[GuildRun]) -> JobOutcome:
    outcomes = {run.outcome for run in runs}
    if GuildOutcome.FAILED in outcomes:
        return JobOutcome.FAILED
    if GuildOutcome.DONE in outcomes:
        return JobOutcome.SUCCESS
    if GuildOutcome.CLAIMED_ELSEWHERE in outcomes:
        return JobOutcome.CLAIMED_ELSEWHERE
    return JobOutcome.SKIPPED


def _real_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def default_owner() -> str:
    """`scheduler_slots.claimed_by`: host, process and instance (two apps in one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Scheduler:
    """Fires the jobs on their triggers, claims a slot per guild, records runs, misses and durations."""

    def __init__(
        self,
        jobs: Sequence[JobSpec],
        *,
        store: Store,
        metrics: Metrics,
        guild_ids: Callable[[], Iterable[int]],
        is_ready: Callable[[int], bool],
        timezone: str = "UTC",
        misfire_grace_seconds: int = 300,
        owner: str | None = None,
    ) -> None:
        self._jobs = {job.name: job for job in jobs}
        self._store = store
        self._metrics = metrics
        self._guild_ids = guild_ids
        self._is_ready = is_ready
        self._timezone = zoneinfo.ZoneInfo(timezone)
        self._grace = misfire_grace_seconds
        self.owner = owner or default_owner()
        self._apscheduler: AsyncIOScheduler | None = None
        self._in_flight: set[asyncio.Task[typing.Any]] = set()
        self._stopping = False

    @property
    def job_names(self) -> list[str]:
        return list(self._jobs)

    @property
    def running(self) -> bool:
        return self._apscheduler is not None and not self._stopping

    def start(self) -> None:
        """Start firing (call inside the running event loop, once the bot is connected).

        Every job's series exist from here: runs at 0 for each outcome, an empty duration histogram, and
        the last-run time set to now, so the dashboard has data before the first fire and the staleness
        alert counts from the start instead of never firing for a job that never ran.
        """
        started = time.time()
        for name in self._jobs:
            for outcome in JobOutcome:
                self._metrics.job_runs.labels(job_name=name, outcome=outcome.value)
            self._metrics.job_duration.labels(job_name=name)
            self._metrics.job_last_run.labels(job_name=name).set(started)
        scheduler = AsyncIOScheduler(
            timezone=self._timezone,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": self._grace},
        )
        for job in self._jobs.values():
            trigger = job.trigger
            if job.jitter:
                # Fires get the jitter; slots stay named after the jitter-free trigger's times.
                trigger = copy.copy(trigger)
                trigger.jitter = job.jitter  # pyright: ignore[reportAttributeAccessIssue]
            scheduler.add_job(  # pyright: ignore[reportUnknownMemberType]
                self._fire, trigger=trigger, args=(job.name,), id=job.name, name=job.name
            )
        scheduler.add_listener(  # pyright: ignore[reportUnknownMemberType]
            self._on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR
        )
        scheduler.start()  # pyright: ignore[reportUnknownMemberType]
        self._apscheduler = scheduler
        _LOGGER.info(
            "scheduler started",
            extra={"jobs": ",".join(self._jobs), "owner": self.owner, "timezone": str(self._timezone)},
        )

    async def stop(self, *, timeout: float = _STOP_GRACE_SECONDS) -> None:
        """Stop firing, let running jobs finish their current guild (up to `timeout`), cancel the rest."""
        self._stopping = True
        scheduler = self._apscheduler
        if scheduler is None:
            return
        scheduler.pause()  # pyright: ignore[reportUnknownMemberType]
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=timeout)
        scheduler.shutdown(wait=False)  # pyright: ignore[reportUnknownMemberType]
        leftovers = list(self._in_flight)
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        await asyncio.sleep(0)  # AsyncIOScheduler shuts down in a callback on the loop
        self._apscheduler = None
        _LOGGER.info("scheduler stopped")

    def next_run_time(self, job: str) -> datetime.datetime | None:
        """When the job fires next (with jitter), or None when not scheduled."""
        if self._apscheduler is None:
            return None
        scheduled = self._apscheduler.get_job(job)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        if scheduled is None:
            return None
        return typing.cast("datetime.datetime | None", scheduled.next_run_time)  # pyright: ignore[reportUnknownMemberType]

    async def run_now(self, job: str, guild_ids: Iterable[int] | None = None) -> JobReport:
        """Run a job at once (on demand) for the given guilds, or every guild of this process.

        No slot is claimed: whoever asked wants it done now, and the work is idempotent.
        """
        spec = self._jobs.get(job)
        if spec is None:
            msg = f"unknown job {job!r}; known: {', '.join(self._jobs)}"
            raise ValueError(msg)
        # A task of its own: stopping the scheduler may cancel the run, never the caller.
        task = asyncio.create_task(self._run(spec, scheduled_for=None, guild_ids=guild_ids), name=f"job-{job}")
        self._track(task)
        return await asyncio.shield(task)

    async def _fire(self, job: str) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._track(task)
        spec = self._jobs[job]
        now = _real_now()
        lookback = datetime.timedelta(seconds=self._grace + spec.jitter + 1)
        scheduled = slot_time(spec.trigger, now, lookback=lookback) or now
        await self._run(spec, scheduled_for=scheduled, guild_ids=None)

    def _track(self, task: asyncio.Task[typing.Any]) -> None:
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _run(
        self, spec: JobSpec, *, scheduled_for: datetime.datetime | None, guild_ids: Iterable[int] | None
    ) -> JobReport:
        started = time.monotonic()
        guilds = sorted(set(self._guild_ids() if guild_ids is None else guild_ids))
        limit = asyncio.Semaphore(max(1, spec.concurrency))

        async def one(guild_id: int) -> GuildRun:
            async with limit:
                return await self._run_guild(spec, guild_id, scheduled_for)

        runs = tuple(await asyncio.gather(*(one(guild_id) for guild_id in guilds)))
        outcome = _outcome_of(runs)
        after = ""
        if spec.after is not None and not (self._stopping and scheduled_for is not None):
            try:
                after = await spec.after()
            except Exception as exc:
                self._metrics.errors.labels(stage="scheduler").inc()
                _LOGGER.warning(
                    "scheduled job step failed",
                    exc_info=True,
                    extra={"job": spec.name, "error": f"{type(exc).__name__}: {exc}"[:300]},
                )
                outcome = JobOutcome.FAILED
                after = f"failed: {type(exc).__name__}"
        duration = time.monotonic() - started
        self._metrics.job_runs.labels(job_name=spec.name, outcome=outcome.value).inc()
        self._metrics.job_last_run.labels(job_name=spec.name).set(time.time())
        self._metrics.job_duration.labels(job_name=spec.name).observe(duration)
        _LOGGER.info(
            "scheduled job finished",
            extra={
                "job": spec.name,
                "outcome": outcome.value,
                "scheduled_for": scheduled_for.isoformat() if scheduled_for else "on demand",
                "guilds": len(runs),
                "done": sum(1 for run in runs if run.outcome is GuildOutcome.DONE),
                "claimed_elsewhere": sum(1 for run in runs if run.outcome is GuildOutcome.CLAIMED_ELSEWHERE),
                "duration_s": round(duration, 3),
                **({"after": after} if after else {}),
            },
        )
        return JobReport(
            job=spec.name, outcome=outcome, guilds=runs, scheduled_for=scheduled_for, duration=duration, after=after
        )

    async def _run_guild(self, spec: JobSpec, guild_id: int, scheduled_for: datetime.datetime | None) -> GuildRun:
        if self._stopping and scheduled_for is not None:
            return GuildRun(guild_id=guild_id, outcome=GuildOutcome.NOT_RUN)
        if not self._is_ready(guild_id):
            return GuildRun(guild_id=guild_id, outcome=GuildOutcome.NOT_READY, detail="member list loading")
        try:
            if scheduled_for is not None and not await self._store.claim_slot(
                spec.name, slot_key(scheduled_for, guild_id), self.owner
            ):
                return GuildRun(guild_id=guild_id, outcome=GuildOutcome.CLAIMED_ELSEWHERE)
            detail = await spec.work(guild_id)
        except GuildNotReadyError:
            return GuildRun(guild_id=guild_id, outcome=GuildOutcome.NOT_READY, detail="member list loading")
        except Exception as exc:
            self._metrics.errors.labels(stage="scheduler").inc()
            _LOGGER.warning(
                "scheduled job failed for guild",
                exc_info=not isinstance(exc, JobFailedError),
                extra={"job": spec.name, "guild_id": guild_id, "error": f"{type(exc).__name__}: {exc}"[:300]},
            )
            return GuildRun(guild_id=guild_id, outcome=GuildOutcome.FAILED, detail=str(exc)[:300])
        return GuildRun(guild_id=guild_id, outcome=GuildOutcome.DONE, detail=detail)

    def _on_event(self, event: JobEvent) -> None:
        job = str(event.job_id)  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
        if event.code == EVENT_JOB_ERROR:  # pyright: ignore[reportUnknownMemberType]
            if not self._stopping:  # a run cancelled at shutdown is not an error
                self._metrics.errors.labels(stage="scheduler").inc()
            return
        # Misfired beyond the grace time, or skipped because the previous run was still going.
        self._metrics.job_missed.labels(job_name=job).inc()
        _LOGGER.warning(
            "scheduled run missed",
            extra={"job": job, "reason": "misfire" if event.code == EVENT_JOB_MISSED else "still running"},  # pyright: ignore[reportUnknownMemberType]
        )


# ---------------------------------------------------------------------------------------------------
# The jobs
# ---------------------------------------------------------------------------------------------------


class RelistResult(typing.Protocol):
    @property
    def completed(self) -> bool: ...
    @property
    def listed(self) -> int: ...
    @property
    def pruned(self) -> int: ...
    @property
    def reason(self) -> str | None: ...


class MemberRelister(typing.Protocol):
    """Refreshes a guild's cached members from Discord's full list (`reconciler.discord.relist`)."""

    async def relist(self, guild_id: int) -> RelistResult: ...


def _check(report: RunReport) -> None:
    if report.outcome in {Outcome.FAILED, Outcome.REFUSED}:
        raise JobFailedError(f"{report.kind.value} run {report.outcome.value}: {report.reason}")


@attrs.define(kw_only=True)
class _DriftCheck:
    """Compare each guild's rows with the cache; record it, publish it, and repair what differs."""

    desired: DesiredState
    guild_lock: Callable[[int], contextlib.AbstractAsyncContextManager[typing.Any]]
    store: Store
    queue: SyncQueue
    metrics: Metrics
    auto_heal: bool
    clock: Callable[[], datetime.datetime]
    redact: Callable[[str], str]
    """Exception text goes to `sync_runs.error_sample` through the logs' redaction."""

    async def __call__(self, guild_id: int) -> str:
        started = time.monotonic()
        run_id = await self.store.start_run(guild_id, DRIFT_CHECK, Trigger.SCHEDULE.value, None)
        try:
            report = await measure_drift(
                guild_id,
                desired=self.desired,
                store=self.store,
                guild_lock=self.guild_lock,
                now=self.clock(),
                metrics=self.metrics,
            )
        except GuildNotReadyError:
            await self._finish(run_id, guild_id, started, Outcome.SKIPPED, note="guild not ready")
            raise
        except BaseException as exc:
            note = f"{type(exc).__name__}: {exc}"[:500]
            await asyncio.shield(self._finish(run_id, guild_id, started, Outcome.FAILED, note=note))
            raise
        summary = f"drift: {report.drift.describe()}"
        await self._finish(
            run_id,
            guild_id,
            started,
            Outcome.SUCCESS,
            note=summary if report.drift.total else None,
            counts=report.counts,
        )
        healing = bool(report.drift.total) and self.auto_heal
        _LOGGER.log(
            logging.WARNING if report.drift.total else logging.INFO,
            "drift checked",
            extra={
                "guild_id": guild_id,
                "drift": report.drift.total,
                **report.drift.by_kind(),
                "coverage": round(report.coverage, 6),
                "healing": healing,
            },
        )
        if healing:
            # Forced: a row edited behind the bot's back still carries the fingerprint of what the bot
            # wrote, so an ordinary run would call it unchanged. Only the drifted members are rewritten.
            request = SyncRequest(
                guild_id=guild_id,
                scope=Scope.of_users(report.drifted_user_ids, roles=True),
                trigger=Trigger.SCHEDULE,
                force=bool(report.drifted_user_ids),
            )
            # Not awaited: the repair is an ordinary run (sync_runs, metrics); the next check sees its result.
            self.queue.enqueue(request)
            summary += "; reconcile queued"
        return summary

    async def _finish(
        self,
        run_id: int,
        guild_id: int,
        started: float,
        outcome: Outcome,
        *,
        note: str | None,
        counts: ChangeCounts | None = None,
    ) -> None:
        self.metrics.sync_runs.labels(
            guild=str(guild_id), trigger=Trigger.SCHEDULE.value, kind=DRIFT_CHECK, outcome=outcome.value
        ).inc()
        self.metrics.sync_duration.labels(kind=DRIFT_CHECK).observe(time.monotonic() - started)
        counts = counts or ChangeCounts()
        try:
            await self.store.finish_run(
                run_id,
                outcome=outcome.value,
                created=counts.created,
                updated=counts.updated,
                unchanged=counts.unchanged,
                left=counts.left,
                error_sample=None if note is None else self.redact(note),
            )
        except Exception:
            self.metrics.errors.labels(stage="store").inc()
            _LOGGER.exception("drift check not recorded", extra={"guild_id": guild_id, "run_id": run_id})


@attrs.define(kw_only=True)
class _Relist:
    """Refresh the cache from Discord's full member list, then reconcile the database against it."""

    relister: MemberRelister
    queue: SyncQueue

    async def __call__(self, guild_id: int) -> str:
        listed = await self.relister.relist(guild_id)
        if not listed.completed:
            raise JobFailedError(f"relist incomplete: {listed.reason}")
        request = SyncRequest(
            guild_id=guild_id, scope=Scope.everything(), trigger=Trigger.SCHEDULE, kind=RunKind.RELIST
        )
        report = await self.queue.submit(request)
        _check(report)
        counts = report.counts
        return (
            f"{listed.listed:,} listed, {listed.pruned:,} missed departures; "
            f"{counts.created:,} created, {counts.updated:,} updated, {counts.left:,} left"
        )


@attrs.define(frozen=True, kw_only=True, slots=True)
class _Unrepaired:
    """A difference a relist of this process left behind, and when another relist may try again."""

    mismatch: CountMismatch
    retry_at: datetime.datetime
    backoff: datetime.timedelta


@attrs.define(kw_only=True)
class _CountAudit:
    """Compare Discord's own counts with the replica's; relist a guild whose counts still differ after a settle.

    A difference that survives the relist (Discord's member count is approximate and may lag on a busy
    guild, or something the relist cannot see) is not relisted again while it stays the same, and a new
    one only after a back-off (an hour, doubling up to a day, when the nightly relist runs anyway): a
    relist of a large guild costs Discord a thousand chunks, and one that repairs nothing only repeats.
    The gauge and the run's note report the difference every time.
    """

    discord: DiscordCounts
    store: Store
    relist: _Relist
    metrics: Metrics
    settle_seconds: float
    clock: Callable[[], datetime.datetime]
    redact: Callable[[str], str]
    """Exception text goes to `sync_runs.error_sample` through the logs' redaction."""
    unrepaired: dict[int, _Unrepaired] = attrs.field(factory=dict[int, _Unrepaired])

    async def __call__(self, guild_id: int) -> str:
        started = time.monotonic()
        run_id = await self.store.start_run(guild_id, COUNT_AUDIT, Trigger.SCHEDULE.value, None)
        try:
            summary = await self._audit(guild_id)
        except GuildNotReadyError:
            await self._finish(run_id, guild_id, started, Outcome.SKIPPED, note="guild not ready")
            raise
        except BaseException as exc:
            note = f"{type(exc).__name__}: {exc}"[:500]
            await asyncio.shield(self._finish(run_id, guild_id, started, Outcome.FAILED, note=note))
            raise
        await self._finish(run_id, guild_id, started, Outcome.SUCCESS, note=summary)
        return summary

    async def _audit(self, guild_id: int) -> str:
        found = await measure_counts(
            guild_id, discord=self.discord, store=self.store, settle_seconds=self.settle_seconds
        )
        publish_counts(self.metrics, guild_id, found.mismatch)
        summary = found.mismatch.describe()
        if not found.mismatch.total:
            self.unrepaired.pop(guild_id, None)
            return summary
        left = self.unrepaired.get(guild_id)
        if left is not None and (left.mismatch == found.mismatch or self.clock() < left.retry_at):
            reason = (
                "as after the last relist"
                if left.mismatch == found.mismatch
                else f"a relist left a difference; next one not before {left.retry_at:%Y-%m-%d %H:%M} UTC"
            )
            _LOGGER.warning(
                "counts differ from Discord's; not relisting again",
                extra={"guild_id": guild_id, "reason": reason, **found.mismatch.by_kind()},
            )
            return f"{summary}; {reason}, not relisted again"
        _LOGGER.warning(
            "counts differ from Discord's; relisting", extra={"guild_id": guild_id, **found.mismatch.by_kind()}
        )
        relisted = await self.relist(guild_id)
        after = await measure_counts(
            guild_id, discord=self.discord, store=self.store, settle_seconds=self.settle_seconds
        )
        publish_counts(self.metrics, guild_id, after.mismatch)
        if after.mismatch.total:
            backoff = _UNREPAIRED_BACKOFF if left is None else min(2 * left.backoff, _UNREPAIRED_BACKOFF_MAX)
            self.unrepaired[guild_id] = _Unrepaired(
                mismatch=after.mismatch, retry_at=self.clock() + backoff, backoff=backoff
            )
        else:
            self.unrepaired.pop(guild_id, None)
        _LOGGER.log(
            logging.WARNING if after.mismatch.total else logging.INFO,
            "count audit relisted",
            extra={"guild_id": guild_id, "remaining": after.mismatch.total, **after.mismatch.by_kind()},
        )
        return f"{summary}; relisted: {relisted}; after: {after.mismatch.describe()}"

    async def _finish(self, run_id: int, guild_id: int, started: float, outcome: Outcome, *, note: str) -> None:
        self.metrics.sync_runs.labels(
            guild=str(guild_id), trigger=Trigger.SCHEDULE.value, kind=COUNT_AUDIT, outcome=outcome.value
        ).inc()
        self.metrics.sync_duration.labels(kind=COUNT_AUDIT).observe(time.monotonic() - started)
        try:
            await self.store.finish_run(run_id, outcome=outcome.value, error_sample=self.redact(note)[:500])
        except Exception:
            self.metrics.errors.labels(stage="store").inc()
            _LOGGER.exception("count audit not recorded", extra={"guild_id": guild_id, "run_id": run_id})


@attrs.define(kw_only=True)
class _Cleanup:
    """The same run as `/sync cleanup`: departed marked left, idle members inactive, dead links pruned."""

    queue: SyncQueue
    days: int

    async def __call__(self, guild_id: int) -> str:
        request = SyncRequest(
            guild_id=guild_id,
            scope=Scope.everything(),
            trigger=Trigger.SCHEDULE,
            kind=RunKind.CLEANUP,
            cleanup_days=self.days,
        )
        report = await self.queue.submit(request)
        _check(report)
        return f"{report.inactive} inactive, {report.links_pruned} links pruned, {report.counts.left} left"


@attrs.define(kw_only=True)
class Retention:
    """The nightly cleanup's retention step, once per fire (`[retention]`).

    Bookkeeping always has an age: old `sync_runs` and `scheduler_slots` rows go, but the latest run of
    each kind per guild always stays. Member history and the names of members who left long ago go
    only when the operator set an age (0 keeps them). Member, user, role, link and activity rows are
    never deleted here.
    """

    store: Store
    settings: RetentionSettings
    metrics: Metrics
    clock: Callable[[], datetime.datetime]

    async def __call__(self) -> str:
        now = self.clock()
        deleted = dict(
            await self.store.prune_bookkeeping(
                runs_before=now - datetime.timedelta(days=self.settings.sync_runs_days),
                slots_before=now - datetime.timedelta(days=self.settings.scheduler_slots_days),
            )
        )
        if self.settings.member_events_days:
            deleted["member_events"] = await self.store.prune_member_events(
                before=now - datetime.timedelta(days=self.settings.member_events_days)
            )
        erased = 0
        if self.settings.left_member_days:
            erased = await self.store.erase_left_names(
                left_before=now - datetime.timedelta(days=self.settings.left_member_days)
            )
        for table, rows in deleted.items():
            self.metrics.retention_deleted.labels(table=table).inc(rows)
        _LOGGER.info(
            "retention pruned bookkeeping",
            extra={**{f"{table}_deleted": rows for table, rows in deleted.items()}, "left_names_erased": erased},
        )
        summary = [f"{counted(rows, table + ' row')} pruned" for table, rows in deleted.items()]
        if self.settings.left_member_days:
            summary.append(f"names erased in {counted(erased, 'row')} of departed members")
        return ", ".join(summary)


def scheduled_jobs(
    settings: ScheduleSettings,
    sync: SyncSettings,
    *,
    retention: RetentionSettings,
    desired: DesiredState,
    guild_lock: Callable[[int], contextlib.AbstractAsyncContextManager[typing.Any]],
    store: Store,
    queue: SyncQueue,
    relister: MemberRelister,
    metrics: Metrics,
    discord_counts: DiscordCounts,
    redact: Callable[[str], str],
    clock: Callable[[], datetime.datetime] = _real_now,
    count_settle_seconds: float = _COUNT_AUDIT_SETTLE_SECONDS,
) -> list[JobSpec]:
    """The drift check, the count audit, the relist and the cleanup (with retention), on the triggers the settings give them."""
    interval = IntervalTrigger(
        seconds=settings.drift_check_seconds,  # pyright: ignore[reportArgumentType]  # a float works (timedelta)
        start_date=_INTERVAL_ORIGIN,
        timezone=datetime.UTC,
    )
    return [
        JobSpec(
            name=DRIFT_CHECK,
            trigger=interval,
            jitter=settings.drift_check_jitter_seconds,
            concurrency=_DRIFT_CONCURRENCY,
            work=_DriftCheck(
                desired=desired,
                guild_lock=guild_lock,
                store=store,
                queue=queue,
                metrics=metrics,
                auto_heal=settings.auto_heal,
                clock=clock,
                redact=redact,
            ),
        ),
        JobSpec(
            name=COUNT_AUDIT,
            trigger=IntervalTrigger(
                seconds=settings.count_audit_seconds,  # pyright: ignore[reportArgumentType]  # a float works
                start_date=_INTERVAL_ORIGIN,
                timezone=datetime.UTC,
            ),
            jitter=settings.count_audit_jitter_seconds,
            concurrency=_COUNT_AUDIT_CONCURRENCY,
            work=_CountAudit(
                discord=discord_counts,
                store=store,
                relist=_Relist(relister=relister, queue=queue),
                metrics=metrics,
                settle_seconds=count_settle_seconds,
                clock=clock,
                redact=redact,
            ),
        ),
        JobSpec(
            name=RELIST,
            trigger=crontab_trigger(settings.relist_cron, settings.timezone),
            concurrency=_RELIST_CONCURRENCY,
            work=_Relist(relister=relister, queue=queue),
        ),
        JobSpec(
            name=CLEANUP,
            trigger=crontab_trigger(settings.cleanup_cron, settings.timezone),
            concurrency=_CLEANUP_CONCURRENCY,
            work=_Cleanup(queue=queue, days=sync.inactive_days),
            after=Retention(store=store, settings=retention, metrics=metrics, clock=clock),
        ),
    ]
