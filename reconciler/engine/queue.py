"""The queue in front of the reconciler: one merged entry per guild, one run per guild at a time.

Requests for a guild merge while they wait; a failed run comes back after an exponential back-off; a
guild that is not ready keeps its entry parked until its member list is complete.
"""

from __future__ import annotations

__all__ = ["SyncQueue"]

import asyncio
import logging
import time
import typing

import attrs

from reconciler.engine.planning import GuildNotReadyError
from reconciler.engine.runs import (
    Outcome,
    PendingRequest,
    ProgressListener,
    RunProgress,
    RunReport,
    SyncRequest,
    Trigger,
)

if typing.TYPE_CHECKING:
    from collections.abc import Callable

    from reconciler.config import SyncSettings
    from reconciler.engine.reconcile import Reconciler
    from reconciler.observability.metrics import Metrics

_LOGGER: typing.Final = logging.getLogger(__name__)


def _is_terminal(exc: BaseException) -> bool:
    """Errors that no later attempt can fix, so not worth a back-off.

    A failed write is retried whatever it was, a programming error in the store's writer too: it may
    depend on the rows written this time (a merged scope, a member's odd value), and `sync.max_attempts`
    bounds how long a real bug keeps coming back. The run is still `failed`, counted and logged each time.
    Attempts that found the database out of reach do not count towards that bound: an outage says
    nothing about the work, which waits for the database (retried every `sync.retry_max_seconds` at most).
    """
    return isinstance(exc, NotImplementedError)


@attrs.define(kw_only=True)
class _Pending:
    """What waits for one guild: its requests, folded in place as they arrive, and who waits for the run."""

    merged: PendingRequest
    waiters: list[asyncio.Future[RunReport]] = attrs.field(factory=list[asyncio.Future[RunReport]])
    listeners: list[ProgressListener] = attrs.field(factory=list[ProgressListener])
    attempt: int = 0
    """Failed attempts so far (the back-off doubles with each)."""
    counted_failures: int = 0
    """Failed attempts that count towards `sync.max_attempts`: those the database was reachable for."""
    not_before: float = 0.0

    @property
    def guild_id(self) -> int:
        return self.merged.guild_id

    @property
    def request(self) -> SyncRequest:
        return self.merged.request()

    def absorb(self, other: _Pending) -> None:
        self.merged.absorb(other.merged)
        self.waiters.extend(other.waiters)
        self.listeners.extend(other.listeners)


class SyncQueue:
    """Merges requests per guild and runs them, one run per guild at a time, retrying with back-off."""

    def __init__(
        self,
        reconciler: Reconciler,
        *,
        is_ready: Callable[[int], bool],
        metrics: Metrics,
        settings: SyncSettings,
        workers: int = 1,
    ) -> None:
        self._reconciler = reconciler
        self._is_ready = is_ready
        self._metrics = metrics
        self._settings = settings
        self._workers = workers
        self._pending: dict[int, _Pending] = {}
        self._running: dict[int, RunProgress] = {}
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._accepting = True
        self._timer: asyncio.TimerHandle | None = None

    def submit(self, request: SyncRequest, *, progress: ProgressListener | None = None) -> asyncio.Future[RunReport]:
        """Queue a request (merged with any waiting for the same guild); the future gets its run's report."""
        future: asyncio.Future[RunReport] = asyncio.get_running_loop().create_future()
        if not self._accepting:
            future.set_exception(RuntimeError("the reconciler is shutting down"))
            return future
        entry = self._add(request)
        entry.waiters.append(future)
        if progress is not None:
            entry.listeners.append(progress)
        return future

    def enqueue(self, request: SyncRequest) -> None:
        """Submit without waiting for the report (gateway hints, scheduled repairs): the outcome goes to
        the metrics and `sync_runs`. Folds the request into the guild's waiting entry in place (a set
        insert per user), as it does all through a burst of events."""
        if self._accepting:
            self._add(request)

    def _add(self, request: SyncRequest) -> _Pending:
        waiting = self._pending.get(request.guild_id)
        if waiting is None:
            waiting = self._pending[request.guild_id] = _Pending(merged=PendingRequest(request))
            self._metrics.queue_depth.set(len(self._pending))
        else:
            waiting.merged.add(request)
            # A person asked, or a drift check has just read the database and found drift: do not wait out
            # a back-off meant for a database that was down (it answers again).
            if request.trigger in (Trigger.COMMAND, Trigger.SCHEDULE):
                waiting.not_before = 0.0
        self._wakeup.set()
        return waiting

    def running(self, guild_id: int) -> RunProgress | None:
        return self._running.get(guild_id)

    def is_pending(self, guild_id: int) -> bool:
        return guild_id in self._pending

    def pending_request(self, guild_id: int) -> SyncRequest | None:
        """The one request the guild's next run would get, from everything waiting for it now."""
        entry = self._pending.get(guild_id)
        return None if entry is None else entry.request

    @property
    def depth(self) -> int:
        return len(self._pending)

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def notify_ready(self, guild_id: int) -> None:
        """A guild's member list is complete: its parked requests may run now."""
        if guild_id in self._pending:
            self._wakeup.set()

    def drop_guild(self, guild_id: int) -> None:
        """The bot left the guild: nothing waiting for it can run any more."""
        self._reconciler.forget(guild_id)
        entry = self._pending.pop(guild_id, None)
        if entry is not None:
            for waiter in entry.waiters:
                if not waiter.done():
                    waiter.set_exception(GuildNotReadyError(guild_id))
        self._metrics.queue_depth.set(len(self._pending))

    def start(self) -> None:
        for index in range(self._workers):
            self._tasks.append(asyncio.create_task(self._work(), name=f"reconcile-worker-{index}"))

    async def stop(self, *, timeout: float) -> None:
        """Stop taking requests, let runs in flight (and ready ones waiting) finish, then cancel."""
        self._accepting = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (self._running or self._runnable() is not None):
            self._wakeup.set()
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._timer is not None:
            self._timer.cancel()
        for entry in self._pending.values():
            for waiter in entry.waiters:
                if not waiter.done():
                    waiter.cancel()
        self._pending.clear()

    def _runnable(self) -> int | None:
        now = time.monotonic()
        for guild_id, entry in self._pending.items():
            if guild_id in self._running or entry.not_before > now:
                continue
            if self._is_ready(guild_id):
                return guild_id
        return None

    def _arm_timer(self) -> None:
        """Wake the workers when the earliest back-off ends."""
        waits = [e.not_before for e in self._pending.values() if e.not_before > time.monotonic()]
        if not waits:
            return
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, min(waits) - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._wakeup.set)

    async def _work(self) -> None:
        while True:
            guild_id = self._runnable()
            if guild_id is None:
                self._wakeup.clear()
                self._arm_timer()
                await self._wakeup.wait()
                continue
            entry = self._pending.pop(guild_id)
            self._metrics.queue_depth.set(len(self._pending))
            await self._execute(entry)

    async def _execute(self, entry: _Pending) -> None:
        request = entry.request
        guild_id = request.guild_id
        self._running[guild_id] = RunProgress(
            guild_id=guild_id,
            kind=request.kind,
            trigger=request.trigger,
            requested_by=request.requested_by,
            phase="starting",
        )
        self._metrics.runs_in_progress.set(len(self._running))

        async def fan_out(progress: RunProgress) -> None:
            self._running[guild_id] = progress
            for listener in entry.listeners:
                try:
                    await listener(progress)
                except Exception:
                    _LOGGER.exception("progress listener failed", extra={"guild_id": guild_id})

        try:
            report = await self._reconciler.run(request, fan_out)
        except asyncio.CancelledError:
            self._requeue(entry)
            raise
        except Exception as exc:
            self._retry_or_fail(entry, exc)
        else:
            if report.outcome is Outcome.SKIPPED and self._accepting:
                # Not ready after all (the cache was refilled under us): wait for readiness again.
                self._requeue(entry)
            else:
                for waiter in entry.waiters:
                    if not waiter.done():
                        waiter.set_result(report)
        finally:
            self._running.pop(guild_id, None)
            self._metrics.runs_in_progress.set(len(self._running))
            self._wakeup.set()

    def _requeue(self, entry: _Pending) -> None:
        waiting = self._pending.get(entry.guild_id)
        if waiting is not None:
            entry.absorb(waiting)
        self._pending[entry.guild_id] = entry
        self._metrics.queue_depth.set(len(self._pending))

    def _retry_or_fail(self, entry: _Pending, exc: Exception) -> None:
        request = entry.request
        failed = RunReport(
            guild_id=request.guild_id,
            kind=request.kind,
            trigger=request.trigger,
            outcome=Outcome.FAILED,
            reason=self._reconciler.redact(f"{type(exc).__name__}: {exc}")[:300],
        )
        for waiter in entry.waiters:
            if not waiter.done():
                waiter.set_result(failed)
        entry.waiters.clear()
        entry.listeners.clear()
        entry.attempt += 1
        unreachable = self._reconciler.database_unreachable(exc)
        if not unreachable:
            entry.counted_failures += 1
        if _is_terminal(exc) or entry.counted_failures >= self._settings.max_attempts or not self._accepting:
            _LOGGER.error(
                "reconcile given up",
                extra={"guild_id": request.guild_id, "attempts": entry.attempt, "error": failed.reason},
            )
            return
        # The exponent is capped: an outage of days is thousands of attempts, and 2.0**1024 overflows.
        delay = min(
            self._settings.retry_max_seconds, self._settings.retry_base_seconds * 2 ** min(entry.attempt - 1, 32)
        )
        entry.not_before = time.monotonic() + delay
        _LOGGER.warning(
            "reconcile retry scheduled",
            extra={
                "guild_id": request.guild_id,
                "attempt": entry.attempt,
                "delay_s": delay,
                "database_unreachable": unreachable,
            },
        )
        self._requeue(entry)
