"""A programming error while writing fails the run (retried, never per member); its text is kept redacted.
A database out of reach fails the run too, but the work waits for it, however many attempts that takes.

Discord's side is a `MemoryGuild`; the database is real (SQLite and PostgreSQL). The bug is injected
into the bulk writer's send, where a wrong number of bindings or a TypeError would surface.
"""

from __future__ import annotations

import datetime
import time
import typing

import pytest
import pytest_asyncio
from memory_guild import MemoryGuild
from pg_schemas import HOST, PORT, postgres_schema_url
from waiting import eventually

from reconciler.config import SyncSettings
from reconciler.domain import MemberState, Scope
from reconciler.engine.queue import SyncQueue
from reconciler.engine.reconcile import Reconciler
from reconciler.engine.runs import Outcome, SyncRequest, Trigger
from reconciler.harness import TcpProxy
from reconciler.observability.logging import Redactor
from reconciler.observability.metrics import Metrics
from reconciler.store import SqlStore

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.asyncio

GUILD = 5_000_000
JOINED = datetime.datetime(2023, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GhIjKl.secret-bot-token-that-must-not-leak"


def member(user_id: int) -> MemberState:
    return MemberState(user_id=user_id, username=f"user{user_id}", joined_at=JOINED)


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    store = await SqlStore.open(database_url, batch_size=50)
    await store.upgrade()
    yield store
    await store.close()


class _InjectedBug:
    """Replaces the bulk backend's send with a programming error; counts sends and one-by-one writes."""

    def __init__(self, store: SqlStore, monkeypatch: pytest.MonkeyPatch, message: str) -> None:
        self.sends = 0
        self.one_by_one = 0
        bulk = store._bulk  # pyright: ignore[reportPrivateUsage]
        real_write_members = bulk.write_members

        async def send(_driver: object, _prepared: object) -> None:
            self.sends += 1
            raise TypeError(message)

        async def write_members(*args: typing.Any) -> None:
            self.one_by_one += 1
            await real_write_members(*args)

        monkeypatch.setattr(bulk, "send", send)
        monkeypatch.setattr(bulk, "write_members", write_members)


def _sample_count(metrics: Metrics, name: str, labels: dict[str, str]) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_a_bug_in_the_bulk_writer_fails_the_run_is_retried_and_writes_nobody_one_by_one(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    guild = MemoryGuild({uid: member(uid) for uid in range(1, 121)})
    bug = _InjectedBug(store, monkeypatch, "send() got an unexpected number of bindings: 9 for 8")
    metrics = Metrics()
    settings = SyncSettings(max_attempts=3, retry_base_seconds=0.05, retry_max_seconds=0.05)
    reconciler = Reconciler(store=store, desired=guild, metrics=metrics, settings=settings)
    queue = SyncQueue(reconciler, is_ready=lambda _guild: True, metrics=metrics, settings=settings)
    queue.start()
    try:
        report = await queue.submit(SyncRequest(guild_id=GUILD, scope=Scope.everything(), trigger=Trigger.STARTUP))
        # Retried with back-off until sync.max_attempts, then given up (nothing left in the queue).
        await eventually(lambda: store.count_runs(guild_id=GUILD), lambda n: n == 3, within=10)
        await eventually(lambda: _idle(queue), lambda idle: idle, within=10)
    finally:
        await queue.stop(timeout=5)

    assert report.outcome is Outcome.FAILED
    assert report.reason is not None
    assert "TypeError" in report.reason
    assert bug.sends >= 3, "every attempt reached the bulk writer"
    assert bug.one_by_one == 0, "a programming error was retried member by member as if it were bad data"
    assert await store.count_runs(guild_id=GUILD, outcome="failed") == 3
    assert _sample_count(metrics, "reconciler_errors_total", {"stage": "store"}) == 3
    labels = {"guild": str(GUILD), "trigger": "startup", "kind": "users", "outcome": "failed"}
    assert _sample_count(metrics, "reconciler_sync_runs_total", labels) == 3
    assert (
        _sample_count(metrics, "reconciler_last_successful_reconcile_timestamp_seconds", {"guild": str(GUILD)}) is None
    )
    recorded = {g.id: g for g in await store.guilds()}
    assert recorded[GUILD].last_reconciled_at is None
    assert (await store.load_snapshot(GUILD, Scope.everything())).members == {}


async def _idle(queue: SyncQueue) -> bool:
    return not queue.is_pending(GUILD) and queue.running(GUILD) is None


async def test_exception_text_kept_in_sync_runs_is_redacted_like_the_logs(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    guild = MemoryGuild({uid: member(uid) for uid in range(1, 11)})
    _InjectedBug(store, monkeypatch, f"request with Authorization: Bot {TOKEN} failed")
    reconciler = Reconciler(
        store=store, desired=guild, metrics=Metrics(), settings=SyncSettings(), redact=Redactor([TOKEN])
    )

    with pytest.raises(TypeError):
        await reconciler.run(SyncRequest(guild_id=GUILD, scope=Scope.everything(), trigger=Trigger.COMMAND))

    run = (await store.last_runs(GUILD))["users"]
    assert run.outcome == "failed"
    assert run.error_sample is not None
    assert "[REDACTED]" in run.error_sample
    assert TOKEN not in run.error_sample
    assert "secret-bot-token" not in run.error_sample


@pytest.mark.postgres
async def test_a_request_waits_out_a_database_outage_longer_than_its_attempts() -> None:
    guild = MemoryGuild({uid: member(uid) for uid in range(1, 121)})
    metrics = Metrics()
    # Three attempts of 0.05-0.2 s back-off: given up within half a second if the outage counted.
    settings = SyncSettings(max_attempts=3, retry_base_seconds=0.05, retry_max_seconds=0.2)
    async with postgres_schema_url() as url, TcpProxy(HOST, PORT) as proxy:
        store = await SqlStore.open(url.replace(f"{HOST}:{PORT}", f"127.0.0.1:{proxy.port}"), batch_size=50)
        try:
            await store.upgrade()
            reconciler = Reconciler(store=store, desired=guild, metrics=metrics, settings=settings)
            queue = SyncQueue(reconciler, is_ready=lambda _guild: True, metrics=metrics, settings=settings)
            queue.start()
            try:
                await proxy.cut()
                cut_at = time.monotonic()
                report = await queue.submit(
                    SyncRequest(guild_id=GUILD, scope=Scope.everything(), trigger=Trigger.STARTUP)
                )
                assert report.outcome is Outcome.FAILED
                # Three times the attempts that would have given up, and still waiting.
                await eventually(lambda: _failed_runs(metrics), lambda n: n >= 3 * settings.max_attempts, within=10)
                assert queue.is_pending(GUILD) or queue.running(GUILD) is not None, "the work was given up"
                outage = time.monotonic() - cut_at
                await proxy.restore()
                await eventually(lambda: _idle(queue), lambda idle: idle, within=10)
            finally:
                await queue.stop(timeout=5)
            stored = (await store.load_snapshot(GUILD, Scope.everything())).members
        finally:
            await store.close()

    assert set(stored) == set(range(1, 121)), f"after an outage of {outage:.1f} s the members were not written"
    assert _sample_count(metrics, "reconciler_errors_total", {"stage": "store"}) == await _failed_runs(metrics)
    recorded = _sample_count(metrics, "reconciler_last_successful_reconcile_timestamp_seconds", {"guild": str(GUILD)})
    assert recorded is not None, "the run after the outage did not succeed"


async def _failed_runs(metrics: Metrics) -> float:
    labels = {"guild": str(GUILD), "trigger": "startup", "kind": "users", "outcome": "failed"}
    return _sample_count(metrics, "reconciler_sync_runs_total", labels) or 0.0
