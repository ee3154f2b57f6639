"""Readiness checks: bounded, never raising, and a database check that keeps reconciler_database_up honest."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import typing

import pytest

from reconciler.observability.readiness import CheckResult, NamedChecks, PeriodicCheck

if typing.TYPE_CHECKING:
    import pathlib
    from collections.abc import Awaitable, Callable

    from reconciler.observability.metrics import Metrics


def _query_sqlite(path: pathlib.Path) -> None:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        db.execute("SELECT 1")
    finally:
        db.close()


def _sqlite_ping(path: pathlib.Path, answered: asyncio.Event | None = None) -> Callable[[], Awaitable[CheckResult]]:
    """A real database check: open the file read-only and run a query; sets ``answered`` when it passes."""

    async def ping() -> CheckResult:
        await asyncio.to_thread(_query_sqlite, path)
        if answered is not None:
            answered.set()
        return CheckResult.passed()

    return ping


def _create_database(path: pathlib.Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
    db.close()


def _gauge_value(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("reconciler_database_up")


@pytest.mark.asyncio
async def test_named_checks_report_every_check_by_name() -> None:
    async def ok() -> CheckResult:
        return CheckResult.passed()

    async def behind() -> CheckResult:
        return CheckResult.failed("guild 42 still chunking")

    results = await NamedChecks({"gateway": ok, "guilds": behind}).check()

    assert results == {
        "gateway": CheckResult(ok=True),
        "guilds": CheckResult(ok=False, reason="guild 42 still chunking"),
    }


@pytest.mark.asyncio
async def test_a_long_failure_reason_is_cut_short() -> None:
    async def verbose() -> CheckResult:
        raise ValueError("x" * 5000)

    results = await NamedChecks({"database": verbose}).check()

    assert not results["database"].ok
    assert len(results["database"].reason) == 200


@pytest.mark.asyncio
async def test_periodic_database_check_keeps_the_gauge_in_step(
    tmp_path: pathlib.Path, make_metrics: Callable[..., Metrics]
) -> None:
    metrics = make_metrics(populated=False)
    path = tmp_path / "replica.db"
    database = PeriodicCheck("database", _sqlite_ping(path), interval=3600, gauge=metrics.database_up)

    async with database:
        assert _gauge_value(metrics) == 0
        assert not (await database()).ok
        assert "OperationalError" in database.latest.reason

        _create_database(path)
        assert (await database.run_once()).ok
        assert _gauge_value(metrics) == 1
        assert (await database()).ok

        path.unlink()
        assert not (await database.run_once()).ok
        assert _gauge_value(metrics) == 0


@pytest.mark.asyncio
async def test_periodic_check_rechecks_in_the_background(
    tmp_path: pathlib.Path, make_metrics: Callable[..., Metrics]
) -> None:
    metrics = make_metrics(populated=False)
    path = tmp_path / "replica.db"
    answered = asyncio.Event()
    ping = _sqlite_ping(path, answered)

    async with PeriodicCheck("database", ping, interval=0.02, gauge=metrics.database_up) as database:
        assert not database.latest.ok
        _create_database(path)
        await asyncio.wait_for(answered.wait(), timeout=5)
        assert _gauge_value(metrics) == 1
        assert database.latest.ok


@pytest.mark.asyncio
async def test_periodic_check_logs_each_change_once(tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "replica.db"
    caplog.set_level(logging.INFO, logger="reconciler.observability.readiness")

    async with PeriodicCheck("database", _sqlite_ping(path), interval=3600) as database:
        await database.run_once()
        await database.run_once()
        _create_database(path)
        await database.run_once()
        await database.run_once()

    events = [(record.levelname, record.getMessage(), getattr(record, "check", None)) for record in caplog.records]
    assert events == [("WARNING", "check failing", "database"), ("INFO", "check passing", "database")]


@pytest.mark.asyncio
async def test_periodic_check_answers_without_waiting_on_a_slow_check() -> None:
    calls = 0
    second_call = asyncio.Event()
    release = asyncio.Event()

    async def slow() -> CheckResult:
        nonlocal calls
        calls += 1
        if calls > 1:
            second_call.set()
            await release.wait()
        return CheckResult.passed()

    async with PeriodicCheck("database", slow, interval=0.01, timeout=60) as database:
        await asyncio.wait_for(second_call.wait(), timeout=5)
        # The second check hangs in the background; readiness still answers from the last result.
        results = await NamedChecks({"database": database}, timeout=0.5).check()
        assert results == {"database": CheckResult(ok=True)}
        release.set()


@pytest.mark.asyncio
async def test_a_check_held_up_by_a_busy_event_loop_is_asked_again() -> None:
    attempts = 0

    async def ping() -> CheckResult:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            # The whole loop is busy past the deadline, as while hikari parses a large guild's member chunks.
            asyncio.get_running_loop().call_soon(time.sleep, 0.3)
        await asyncio.sleep(0.01)
        return CheckResult.passed()

    async def hangs() -> CheckResult:
        nonlocal attempts
        attempts += 1
        await asyncio.Event().wait()
        return CheckResult.passed()

    assert await NamedChecks({"database": ping}, timeout=0.1).check() == {"database": CheckResult(ok=True)}
    assert attempts == 2
    attempts = 0
    results = await NamedChecks({"database": hangs}, timeout=0.1).check()
    assert results == {"database": CheckResult(ok=False, reason="no answer within 0.1 s")}
    assert attempts == 1, "a check that is slow itself is not asked twice"
