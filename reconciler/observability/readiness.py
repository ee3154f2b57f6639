"""What /readyz asks: named checks, each bounded in time, each failure reported with its reason.

The application supplies the checks (gateway connected, database reachable, every guild ready); this
module only runs them. A check that hangs or raises is a failed check, never a hung or failed probe.
"""

from __future__ import annotations

__all__ = ["Check", "CheckResult", "NamedChecks", "PeriodicCheck", "ReadinessProbe"]

import asyncio
import logging
import typing

import attrs

if typing.TYPE_CHECKING:
    import types
    from collections.abc import Awaitable, Callable, Mapping

    import prometheus_client
    import typing_extensions

_LOGGER: typing.Final = logging.getLogger(__name__)
_MAX_REASON_LENGTH: typing.Final = 200


@attrs.define(frozen=True, kw_only=True, slots=True)
class CheckResult:
    """The outcome of one check; ``reason`` says why it fails and is empty when it passes."""

    ok: bool
    reason: str = ""
    detail: str = ""
    """What a passing check has to say (the activity backfill's progress); shown by /readyz."""

    @classmethod
    def passed(cls, detail: str = "") -> CheckResult:
        return cls(ok=True, detail=detail[:_MAX_REASON_LENGTH])

    @classmethod
    def failed(cls, reason: str) -> CheckResult:
        return cls(ok=False, reason=reason[:_MAX_REASON_LENGTH])


Check: typing.TypeAlias = "Callable[[], Awaitable[CheckResult]]"
"""One readiness check: an async callable with no arguments."""


class ReadinessProbe(typing.Protocol):
    """The only thing the metrics server knows about the application's health."""

    async def check(self) -> Mapping[str, CheckResult]:
        """Every check by name; the application is ready when all pass. Must not raise."""
        ...


async def _run_bounded(check: Check, limit: float) -> CheckResult:
    loop = asyncio.get_running_loop()
    for _ in range(2):
        started = loop.time()
        try:
            async with asyncio.timeout(limit):
                return await check()
        except TimeoutError:
            if loop.time() - started < 2 * limit:
                break
            # The deadline passed while the event loop itself was busy (hikari parses a large guild's
            # member chunks back to back, for seconds): the check never had its time. Once more.
        except Exception as exc:
            return CheckResult.failed(f"{type(exc).__name__}: {exc}")
    return CheckResult.failed(f"no answer within {limit:g} s")


class NamedChecks:
    """A `ReadinessProbe` over named async checks, run concurrently, each within ``timeout`` seconds."""

    def __init__(self, checks: Mapping[str, Check], *, timeout: float = 2.0) -> None:
        self._checks = dict(checks)
        self._timeout = timeout

    async def check(self) -> Mapping[str, CheckResult]:
        names = list(self._checks)
        results = await asyncio.gather(*(_run_bounded(self._checks[name], self._timeout) for name in names))
        return dict(zip(names, results, strict=True))


class PeriodicCheck:
    """Runs a check every ``interval`` seconds in the background and remembers the latest result.

    Calling the instance returns that result at once, so it can stand in a `NamedChecks` without making
    /readyz wait on, say, a slow database. With ``gauge`` it also keeps a 0/1 gauge in step with the
    check (``reconciler_database_up`` for the database ping), so the metric moves even when nobody polls
    /readyz. Use as an async context manager: the first check runs on entry, the loop stops on exit.
    """

    def __init__(
        self,
        name: str,
        check: Check,
        *,
        interval: float,
        timeout: float = 2.0,
        gauge: prometheus_client.Gauge | None = None,
    ) -> None:
        self._name = name
        self._check = check
        self._interval = interval
        self._timeout = timeout
        self._gauge = gauge
        self._latest = CheckResult.failed("not checked yet")
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def latest(self) -> CheckResult:
        return self._latest

    async def __call__(self) -> CheckResult:
        return self._latest

    async def run_once(self) -> CheckResult:
        """Check now, record the result (gauge and log on change) and return it."""
        result = await _run_bounded(self._check, self._timeout)
        previous, self._latest = self._latest, result
        if self._gauge is not None:
            self._gauge.set(1 if result.ok else 0)
        if result.ok and not previous.ok:
            _LOGGER.info("check passing", extra={"check": self._name})
        elif not result.ok and (previous.ok or previous.reason != result.reason):
            _LOGGER.warning("check failing", extra={"check": self._name, "reason": result.reason})
        return result

    async def _loop(self, stopping: asyncio.Event) -> None:
        while True:
            try:
                await asyncio.wait_for(stopping.wait(), timeout=self._interval)
            except TimeoutError:
                await self.run_once()
            else:
                return

    async def __aenter__(self) -> typing_extensions.Self:
        await self.run_once()
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._loop(self._stopping), name=f"periodic check {self._name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        # Let a check in flight finish (it is bounded by its timeout) rather than cancel it halfway:
        # a driver interrupted mid-call may still be working in its own thread.
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            await task
