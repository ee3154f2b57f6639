"""The reconciler: one path from any request to a database equal to Discord.

Shape borrowed from controller-runtime: a request names a guild and a scope, never an event's content;
the run reads both sides at that moment (level-triggered), so a missed event is repaired by the next
run. Requests for one guild merge while they wait; one run per guild at a time; failures come back
after an exponential back-off; a refusal is final until someone forces it.
"""

from __future__ import annotations

__all__ = ["Reconciler"]

import asyncio
import contextlib
import datetime
import logging
import time
import typing

import attrs

from reconciler.domain import ChangeCounts, FingerprintMemo
from reconciler.engine.forgetting import forgetting
from reconciler.engine.planning import DesiredState, GuildNotReadyError, PlanProgress, plan_slices, survey
from reconciler.engine.runs import Outcome, RunProgress, RunReport, SyncRequest, Trigger, event_origin
from reconciler.observability.metrics import DRIFT_KINDS

if typing.TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

    from reconciler.config import SyncSettings
    from reconciler.domain import ChangeSet, EventOrigin, MemberState
    from reconciler.engine.planning import Survey
    from reconciler.engine.runs import ProgressListener
    from reconciler.observability.metrics import Metrics
    from reconciler.store.api import ApplyResult, Store

_LOGGER: typing.Final = logging.getLogger(__name__)

# A first run after a start compares without the fingerprint memo when the guild has more members than
# this: feeding it would cost Python's hash of every state on the way (a sixth of a first run of 1M
# members); it is filled in a worker thread once the run is done instead.
_COLD_MEMO_FROM: typing.Final = 20_000


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _unchanged(text: str) -> str:
    return text


class Reconciler:
    """Runs one request against one guild: read both sides, diff, guard, apply, record."""

    def __init__(
        self,
        *,
        store: Store,
        desired: DesiredState,
        metrics: Metrics,
        settings: SyncSettings,
        clock: Callable[[], datetime.datetime] = _utcnow,
        redact: Callable[[str], str] = _unchanged,
    ) -> None:
        self._store = store
        self._redact = redact
        """Scrubs secrets from exception text before `sync_runs.error_sample` keeps it (as the logs do)."""
        self._desired = desired
        self._metrics = metrics
        self._settings = settings
        self._clock = clock
        self._locks: dict[int, asyncio.Lock] = {}
        # Fingerprints computed for a guild's members, reused by its next run (about 100 bytes a member):
        # a no-change reconcile of 1M members then costs a dictionary lookup per member, not a hash.
        self._memos: dict[int, FingerprintMemo] = {}
        self._fills: dict[int, Callable[[], asyncio.Future[None]]] = {}
        """Memo fillings to start once the guild's run is over."""
        self._filling: set[asyncio.Future[None]] = set()
        self._left_mid_run: set[int] = set()
        """Guilds the bot left while one of their runs was in flight: forgotten again when it ends."""

    def guild_lock(self, guild_id: int) -> asyncio.Lock:
        """Held by every run and drift check of the guild in this process."""
        lock = self._locks.get(guild_id)
        if lock is None:
            lock = self._locks[guild_id] = asyncio.Lock()
        return lock

    async def idle(self) -> None:
        """Wait for what runs left to do in the background (filling fingerprint memos)."""
        while self._filling:
            await asyncio.wait(set(self._filling))

    def redact(self, text: str) -> str:
        """Exception text with every secret scrubbed, before it is kept or shown to a person."""
        return self._redact(text)

    def database_unreachable(self, exc: BaseException) -> bool:
        """True when a run failed because the database was out of reach (worth waiting out, not giving up)."""
        return self._store.is_unreachable(exc)

    def forget(self, guild_id: int) -> None:
        """The bot left the guild: drop what was kept in memory for its next run, and its lock.

        A lock held by a run still in flight stays (that run releases it; nothing new can queue)."""
        self._memos.pop(guild_id, None)
        self._fills.pop(guild_id, None)
        lock = self._locks.get(guild_id)
        if lock is not None and lock.locked():
            self._left_mid_run.add(guild_id)
        elif lock is not None:
            del self._locks[guild_id]

    def _forget_if_left(self, guild_id: int) -> None:
        """A run of a guild left meanwhile has ended: drop what it published and kept (series, memo, lock)."""
        if guild_id in self._left_mid_run and not self.guild_lock(guild_id).locked():
            self._left_mid_run.discard(guild_id)
            self.forget(guild_id)
            self._metrics.remove_guild(guild_id)

    def holds(self, guild_id: int) -> bool:
        """Whether anything is kept in memory for the guild (its lock, its fingerprint memo)."""
        return guild_id in self._locks or guild_id in self._memos or guild_id in self._fills

    async def run(self, request: SyncRequest, progress: ProgressListener | None = None) -> RunReport:
        """Reconcile the guild for the request's scope; never raises for a member's error."""
        started = time.monotonic()
        guild_id = request.guild_id
        state = RunProgress(
            guild_id=guild_id,
            kind=request.kind,
            trigger=request.trigger,
            requested_by=request.requested_by,
            phase="reading Discord and the database",
        )

        async def report_progress(done: int, total: int, phase: str = "writing") -> None:
            nonlocal state
            state = attrs.evolve(state, phase=phase, done=done, total=total)
            if progress is not None:
                await progress(state)

        run_id: int | None = None
        started_at = self._clock()
        try:
            # Inside the try: a database that cannot even take the run's row is a failed run like any other
            # (counted in errors and sync_runs_total, retried with back-off), not an error nobody counts.
            # A gateway run has no row of its own: it is added to its period's row when it ends.
            if request.trigger is not Trigger.GATEWAY:
                run_id = await self._store.start_run(
                    guild_id, kind=request.kind.value, trigger=request.trigger.value, requested_by=request.requested_by
                )
            async with self.guild_lock(guild_id), self._store.guild_lock(guild_id):
                if progress is not None:
                    await progress(state)
                report = await self._reconcile(request, report_progress, event_origin(request, run_id))
        except GuildNotReadyError:
            report = RunReport(
                guild_id=guild_id,
                kind=request.kind,
                trigger=request.trigger,
                outcome=Outcome.SKIPPED,
                reason="guild not ready: its member list is still loading",
            )
        except Exception as exc:
            _LOGGER.exception("reconcile failed", extra={"guild_id": guild_id, "kind": request.kind.value})
            self._metrics.errors.labels(stage="store").inc()
            report = RunReport(
                guild_id=guild_id,
                kind=request.kind,
                trigger=request.trigger,
                outcome=Outcome.FAILED,
                reason=f"{type(exc).__name__}: {exc}"[:500],
            )
            report = attrs.evolve(report, duration=time.monotonic() - started, run_id=run_id)
            await self._finish(report, request, started_at)
            self._forget_if_left(guild_id)
            raise
        report = attrs.evolve(report, duration=time.monotonic() - started, run_id=run_id)
        report = attrs.evolve(report, run_id=await self._finish(report, request, started_at))
        self._start_fill(guild_id)
        self._forget_if_left(guild_id)
        return report

    def _start_fill(self, guild_id: int) -> None:
        fill = self._fills.pop(guild_id, None)
        if fill is not None:
            filling = fill()
            self._filling.add(filling)
            filling.add_done_callback(self._filling.discard)

    async def _reconcile(
        self,
        request: SyncRequest,
        report_progress: Callable[[int, int, str], Awaitable[None]],
        origin: EventOrigin,
    ) -> RunReport:
        guild_id = request.guild_id
        full_rows = request.force or request.verify
        started = time.monotonic()
        # Read each run: `reconciler user forget` may have run in another process since the last one.
        desired = forgetting(self._desired, await self._store.forgotten_users())
        surveyed = await survey(desired, self._store, guild_id, request.scope, full_rows=full_rows)
        self._metrics.db_latency.labels(operation="load_fingerprints").observe(time.monotonic() - started)
        refusal = self._guard(request, surveyed)
        if refusal is not None:
            self._metrics.errors.labels(stage="guard").inc()
            _LOGGER.warning("mass departure refused", extra={"guild_id": guild_id, "reason": refusal})
            return RunReport(
                guild_id=guild_id,
                kind=request.kind,
                trigger=request.trigger,
                outcome=Outcome.REFUSED,
                counts=ChangeCounts(left=len(surveyed.departures)),
                reason=refusal,
            )
        result, stopped = await self._write_slices(request, surveyed, report_progress, desired, origin)
        counts, errors, sample = result.counts, result.errors, result.error_sample
        if isinstance(stopped, GuildNotReadyError):
            return RunReport(
                guild_id=guild_id,
                kind=request.kind,
                trigger=request.trigger,
                outcome=Outcome.SKIPPED,
                counts=counts,
                errors=errors,
                error_sample=sample,
                reason="the member list was reloaded during the run: the members compared before were written",
            )
        if stopped is not None:
            raise stopped
        if request.scope.all_members:
            await self._store.set_reconciled(guild_id, self._clock())
        inactive = links_pruned = 0
        if request.cleanup_days is not None:
            await report_progress(len(surveyed.candidates), len(surveyed.candidates), "cleanup")
            cutoff = self._clock() - datetime.timedelta(days=request.cleanup_days)
            inactive = await self._store.mark_inactive(guild_id, cutoff=cutoff, origin=origin)
            links_pruned = await self._store.prune_deleted_role_links(guild_id)
            if inactive:
                self._metrics.changes_applied.labels(guild=str(guild_id), kind="member_inactive").inc(inactive)
        return RunReport(
            guild_id=guild_id,
            kind=request.kind,
            trigger=request.trigger,
            outcome=Outcome.PARTIAL if errors else Outcome.SUCCESS,
            counts=counts,
            inactive=inactive,
            links_pruned=links_pruned,
            errors=errors,
            error_sample=sample,
        )

    async def _write_slices(
        self,
        request: SyncRequest,
        surveyed: Survey,
        report_progress: Callable[[int, int, str], Awaitable[None]],
        desired: DesiredState,
        origin: EventOrigin,
    ) -> tuple[ApplyResult, Exception | None]:
        """Compare the scope slice by slice and write each slice while the next is compared.

        A slice that cannot be planned (the member list reloaded, a failed read) ends the stream: the
        slices planned before it are still written; what was written and why it stopped are returned.
        """
        guild_id = request.guild_id
        full_rows = request.force or request.verify
        memo, remember = (None, None) if full_rows else self._memo_for(guild_id, surveyed)
        progress = PlanProgress(total=len(surveyed.candidates))
        phase = "comparing and writing"
        stopped: list[Exception] = []

        async def parts() -> AsyncGenerator[ChangeSet, None]:
            planned = plan_slices(
                desired,
                self._store,
                surveyed,
                memo=memo,
                full_rows=full_rows,
                force=request.force,
                progress=progress,
                remember=remember,
            )
            try:
                async with contextlib.aclosing(planned):
                    async for part in planned:
                        yield part
                        await report_progress(progress.settled, progress.total, phase)
            except Exception as exc:
                stopped.append(exc)

        async def written(done: int, _total: int) -> None:
            progress.written = done
            await report_progress(progress.settled, progress.total, phase)

        started = time.monotonic()
        async with contextlib.aclosing(parts()) as stream:
            result = await self._store.apply_stream(guild_id, stream, on_progress=written, origin=origin)
        self._metrics.db_latency.labels(operation="apply").observe(time.monotonic() - started)
        self._count_changes(guild_id, result.counts)
        if stopped:
            return result, stopped[0]
        if memo is not None and request.scope.all_members:
            memo.trim(len(surveyed.candidates))
        return result, None

    def _memo_for(self, guild_id: int, surveyed: Survey) -> tuple[FingerprintMemo | None, list[MemberState] | None]:
        """The guild's fingerprint memo for this run, or none and a list to fill it from after the run.

        A memo that knows few of the stored members (the first run after a start) is not fed during the
        run: that would cost Python's hash of every state on the way. The states compared are kept and
        the memo is filled in a worker thread once the run is over (the next run is then cheap).
        """
        memo = self._memos.setdefault(guild_id, FingerprintMemo())
        known = surveyed.present
        if known <= _COLD_MEMO_FROM or len(memo) >= known // 2:
            return memo, None
        remember: list[MemberState] = []
        self._fills[guild_id] = lambda: asyncio.ensure_future(asyncio.to_thread(memo.remember, remember))
        return None, remember

    def _guard(self, request: SyncRequest, surveyed: Survey) -> str | None:
        """Refuse a run that would mark too many members left on evidence other than the gateway's."""
        if request.allow_departures:
            return None
        unconfirmed = sum(1 for uid in surveyed.departures if uid not in request.confirmed_departures)
        if not unconfirmed:
            return None
        # Against the whole guild, not the scope: leaving 1 of 1 scoped member is not a mass departure.
        present = max(surveyed.present, self._desired.member_count(request.guild_id) + len(surveyed.departures))
        limit = self._settings.max_departure_ratio * max(present, 1)
        if unconfirmed <= limit:
            return None
        return (
            f"would mark {unconfirmed:,} of {present:,} members as left "
            f"(more than {self._settings.max_departure_ratio:.0%}); run /sync full confirm:true if this is real"
        )

    def _count_changes(self, guild_id: int, counts: ChangeCounts) -> None:
        guild = str(guild_id)
        for kind, value in (
            ("member_created", counts.created),
            ("member_updated", counts.updated),
            ("member_left", counts.left),
            ("member_rejoined", counts.rejoined),
            ("role_link_added", counts.links_added),
            ("role_link_removed", counts.links_removed),
            ("role_created", counts.roles_created),
            ("role_updated", counts.roles_updated),
            ("role_deleted", counts.roles_deleted),
        ):
            if value:
                self._metrics.changes_applied.labels(guild=guild, kind=kind).inc(value)

    def _publish_converged(self, report: RunReport) -> None:
        """A full run just made the database equal to the cache: what it could not write is the drift left.

        The drift check measures it again on its schedule; until then the dashboard and the coverage
        alert see the state the run left, not nothing.
        """
        guild = str(report.guild_id)
        counts = report.counts
        on_discord = counts.unchanged + counts.updated + counts.created + counts.rejoined
        for kind in DRIFT_KINDS:
            self._metrics.drift.labels(guild=guild, kind=kind).set(report.errors if kind == "stale" else 0)
        self._metrics.discord_members.labels(guild=guild).set(on_discord)
        if on_discord:
            self._metrics.coverage_ratio.labels(guild=guild).set(max(0.0, (on_discord - report.errors) / on_discord))
        self._metrics.publish_unaudited(report.guild_id)

    async def _publish_stored(self, guild_id: int) -> None:
        """The database's member rows by status, read back once the run has written them (one grouped count)."""
        try:
            stats = await self._store.stats(guild_id, now=self._clock())
        except Exception:
            _LOGGER.debug("member counts not read after the run", exc_info=True, extra={"guild": guild_id})
            return
        for status, count in stats.members_by_status.items():
            self._metrics.database_members.labels(guild=str(guild_id), status=status).set(count)

    async def _finish(self, report: RunReport, request: SyncRequest, started_at: datetime.datetime) -> int | None:
        """Count the run in the metrics (every run) and record it in `sync_runs`; the row's id."""
        guild = str(report.guild_id)
        self._metrics.sync_runs.labels(
            guild=guild, trigger=report.trigger.value, kind=report.kind.value, outcome=report.outcome.value
        ).inc()
        self._metrics.sync_duration.labels(kind=report.kind.value).observe(report.duration)
        if report.errors:
            self._metrics.errors.labels(stage="store").inc(report.errors)
        if report.outcome in (Outcome.SUCCESS, Outcome.PARTIAL):
            now = time.monotonic()
            for arrived in request.event_times:
                self._metrics.event_lag.observe(max(0.0, now - arrived))
            if request.scope.all_members:
                self._metrics.last_success.labels(guild=guild).set(time.time())
                self._publish_converged(report)
                await self._publish_stored(report.guild_id)
        sample = "; ".join(f"{uid}: {reason}" for uid, reason in report.error_sample) or report.reason
        sample = None if sample is None else self._redact(sample)
        counts = {
            "created": report.counts.created,
            "updated": report.counts.updated,
            "unchanged": report.counts.unchanged,
            "left": report.counts.left,
            "inactive": report.inactive,
            "errors": report.errors,
        }
        run_id = report.run_id
        # The run's outcome is in the metrics and the log already: a database that cannot take its row
        # must not turn a finished run into a failed one.
        try:
            if run_id is not None:
                await self._store.finish_run(run_id, outcome=report.outcome.value, error_sample=sample, **counts)
            elif report.trigger is Trigger.GATEWAY:
                run_id = await self._store.record_gateway_run(
                    report.guild_id,
                    kind=report.kind.value,
                    outcome=report.outcome.value,
                    started_at=started_at,
                    period_seconds=self._settings.gateway_runs_interval_seconds,
                    error_sample=sample,
                    **counts,
                )
        except Exception as exc:
            _LOGGER.warning(
                "run not recorded in sync_runs",
                extra={"guild_id": report.guild_id, "error": self._redact(f"{type(exc).__name__}: {exc}")[:300]},
            )
        _LOGGER.info(
            "reconcile finished",
            extra={
                "guild_id": report.guild_id,
                "kind": report.kind.value,
                "trigger": report.trigger.value,
                "outcome": report.outcome.value,
                "members_created": report.counts.created,
                "members_updated": report.counts.updated,
                "members_unchanged": report.counts.unchanged,
                "members_left": report.counts.left,
                "members_rejoined": report.counts.rejoined,
                "errors": report.errors,
                "duration_s": round(report.duration, 3),
            },
        )
        return run_id
