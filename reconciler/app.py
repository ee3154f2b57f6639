"""The composition root: builds every part from the settings, starts them in order, stops them in reverse.

Only this module knows every part. Start order: database (migrated), metrics server, bot (not yet
connected), activity buffer, queue, listeners, gateway, scheduler. Stop order is the reverse, so the
scheduler stops first, then intake, the queue drains against a still-filled cache, activity is
flushed, then the gateway and the database close.
"""

from __future__ import annotations

__all__ = ["App", "running_app"]

import asyncio
import contextlib
import datetime
import logging
import time
import typing

import arc
import attrs

from reconciler.activity import ActivityBuffer, Backfill
from reconciler.discord.bot import build_bot, start_bot
from reconciler.discord.cache_reader import CacheReader
from reconciler.discord.commands import SyncCommands, register_sync_commands
from reconciler.discord.counts import DiscordCountReader
from reconciler.discord.history import HikariHistory
from reconciler.discord.listeners import GatewayListeners
from reconciler.discord.readiness import GuildReadiness
from reconciler.discord.relist import Relister
from reconciler.engine.guilds import GuildRecords
from reconciler.engine.queries import GuildQueries
from reconciler.engine.queue import SyncQueue
from reconciler.engine.reconcile import Reconciler
from reconciler.failures import FailureKind, StartupError
from reconciler.gc_policy import LoadingPause, relax_collection_thresholds
from reconciler.heap import HeapTrimmer, fix_mmap_threshold, glibc_malloc_trim
from reconciler.observability.logging import Redactor
from reconciler.observability.metrics import Metrics
from reconciler.observability.readiness import CheckResult, NamedChecks, PeriodicCheck
from reconciler.observability.server import MetricsServer
from reconciler.scheduling import Scheduler, scheduled_jobs
from reconciler.store import SqlStore

if typing.TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

    import hikari

    from reconciler.config import Settings
    from reconciler.store.api import Store

_LOGGER: typing.Final = logging.getLogger(__name__)

# Runs are cheap to start and long to finish; on SQLite a second writer only waits for the first.
_WORKERS_SQLITE: typing.Final = 1
_WORKERS_POSTGRES: typing.Final = 4
_DRAIN_SECONDS: typing.Final = 6.0


@attrs.define(kw_only=True)
class App:
    """The running parts, for the CLI, the demo and the end-to-end tests."""

    settings: Settings
    metrics: Metrics
    store: SqlStore
    bot: hikari.GatewayBot
    readiness: GuildReadiness
    reader: CacheReader
    reconciler: Reconciler
    queue: SyncQueue
    activity: ActivityBuffer
    backfill: Backfill | None
    """Fills counting gaps from Discord's history when a guild is ready; None when disabled."""
    listeners: GatewayListeners
    commands: SyncCommands
    metrics_server: MetricsServer | None
    scheduler: Scheduler | None = None
    """The drift check, count audit, relist and cleanup jobs; None when `schedule.enabled` is false."""

    def guild_ids(self) -> list[int]:
        return self.readiness.guild_ids()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until every guild the gateway announced has its member list."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids = self.readiness.guild_ids()
            if ids and all(self.readiness.is_ready(g) for g in ids):
                return True
            await asyncio.sleep(0.05)
        return False

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no reconcile request is queued or running (tests and the demo)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.queue.depth and not self.queue.busy:
                return True
            await asyncio.sleep(0.05)
        return False


def _gateway_check(bot: hikari.GatewayBot) -> typing.Callable[[], typing.Awaitable[CheckResult]]:
    async def check() -> CheckResult:
        down = [shard_id for shard_id, shard in bot.shards.items() if not shard.is_alive]
        if not bot.shards:
            return CheckResult.failed("gateway not started")
        if down:
            return CheckResult.failed(f"shards down: {down}")
        return CheckResult.passed()

    return check


def _guilds_check(readiness: GuildReadiness) -> typing.Callable[[], typing.Awaitable[CheckResult]]:
    async def check() -> CheckResult:
        if not readiness.guild_ids():
            return CheckResult.failed("no guild received yet")
        waiting = readiness.not_ready()
        if waiting:
            progress = readiness.progress(waiting[0])
            detail = progress.describe() if progress else "unknown"
            return CheckResult.failed(f"{len(waiting)} guild(s) not ready; {waiting[0]}: {detail}")
        return CheckResult.passed()

    return check


def _activity_check(
    readiness: GuildReadiness, backfill: Backfill | None
) -> typing.Callable[[], typing.Awaitable[CheckResult]]:
    """Always passes (counting goes on while gaps are filled); its detail says how far the backfill is."""

    async def check() -> CheckResult:
        if backfill is None:
            return CheckResult.passed("backfill disabled: counting live messages only")
        running = backfill.running()
        if running:
            return CheckResult.passed(
                f"{len(running)} guild(s) backfilling; {running[0]}: {backfill.describe(running[0])}"
            )
        described = [backfill.describe(g) for g in readiness.guild_ids()]
        return CheckResult.passed(next((d for d in described if d), "no guild backfilled yet"))

    return check


@contextlib.asynccontextmanager
async def running_app(
    settings: Settings,
    *,
    rest_url: str | None = None,
    metrics: Metrics | None = None,
    serve_metrics: bool = True,
    store_proxy: Callable[[Store], Store] | None = None,
    clock: Callable[[], datetime.datetime] | None = None,
) -> AsyncGenerator[App, None]:
    """Start everything; on exit stop it in order. ``rest_url`` overrides the setting (sandbox).

    ``store_proxy`` wraps the store the running parts use (fault injection in tests: a slow database).
    ``clock`` (tests) replaces the wall clock for the database's timestamps, the cleanup's cutoff and the
    drift check's statistics; the scheduler still fires on real time.
    """
    metrics = metrics or Metrics()
    clock = clock or _utcnow
    async with contextlib.AsyncExitStack() as stack:
        async with _failing_as(FailureKind.DATABASE, "database.url: cannot open or migrate the database"):
            store = await SqlStore.open(settings.database.url, batch_size=settings.database.batch_size, clock=clock)
            stack.push_async_callback(store.close)
            await store.upgrade()
        used: Store = store if store_proxy is None else store_proxy(store)

        database_check = PeriodicCheck("database", _ping(used), interval=5.0, gauge=metrics.database_up)
        await stack.enter_async_context(database_check)

        bot = build_bot(settings.discord, rest_url=rest_url)
        relax_collection_thresholds()
        fix_mmap_threshold()
        await stack.enter_async_context(HeapTrimmer(trim=glibc_malloc_trim()))
        collector = LoadingPause()
        stack.callback(collector.close)
        readiness = GuildReadiness(on_loading=collector.loading)
        reader = CacheReader(bot.cache, readiness)
        reconciler = Reconciler(
            store=used,
            desired=reader,
            metrics=metrics,
            settings=settings.sync,
            clock=clock,
            redact=Redactor([settings.discord.token.get_secret_value()]),
        )
        workers = _WORKERS_SQLITE if store.dialect == "sqlite" else _WORKERS_POSTGRES
        queue = SyncQueue(
            reconciler, is_ready=reader.is_ready, metrics=metrics, settings=settings.sync, workers=workers
        )
        activity = ActivityBuffer(
            store=used,
            metrics=metrics,
            flush_seconds=settings.sync.activity_flush_seconds,
            import_history_days=settings.activity.import_history_days,
            clock=clock,
        )
        backfill: Backfill | None = None
        if settings.activity.backfill_enabled:
            backfill = Backfill(
                buffer=activity,
                history=HikariHistory(bot),
                store=used,
                metrics=metrics,
                max_age_days=max(settings.activity.backfill_max_age_days, settings.activity.import_history_days),
                concurrency=settings.activity.backfill_concurrency,
                clock=clock,
            )
        guilds = GuildRecords(store=used, queue=queue, metrics=metrics)
        listeners = GatewayListeners(
            bot=bot,
            readiness=readiness,
            queue=queue,
            activity=activity,
            guilds=guilds,
            metrics=metrics,
            backfill=backfill,
        )

        commands = SyncCommands(
            queue=queue,
            reader=reader,
            readiness=readiness,
            queries=GuildQueries(
                store=used,
                desired=reader,
                reconciler=reconciler,
                metrics=metrics,
                activity_status=backfill.describe if backfill is not None else None,
            ),
            metrics=metrics,
            settings=settings,
        )
        register_sync_commands(arc.GatewayClient(bot), commands, settings)

        server: MetricsServer | None = None
        if serve_metrics:
            probe = NamedChecks(
                {
                    "gateway": _gateway_check(bot),
                    "database": database_check,
                    "guilds": _guilds_check(readiness),
                    "activity": _activity_check(readiness, backfill),
                }
            )
            obs = settings.observability
            async with _failing_as(
                FailureKind.METRICS_ADDRESS,
                f"observability.metrics_address: cannot listen on {obs.metrics_address}",
                only=OSError,
                fix="stop what listens there (another reconciler?) or pick another HOST:PORT",
            ):
                server = await stack.enter_async_context(
                    MetricsServer(metrics, probe, host=obs.metrics_host, port=obs.metrics_port)
                )

        stack.push_async_callback(_close_bot, bot)
        activity.start()
        stack.push_async_callback(activity.stop)
        if backfill is not None:
            stack.push_async_callback(backfill.close)
        queue.start()
        stack.push_async_callback(queue.stop, timeout=_DRAIN_SECONDS)
        listeners.subscribe()
        stack.callback(listeners.close)

        await start_bot(bot, settings.discord)
        heartbeat = asyncio.create_task(_publish_heartbeats(bot, metrics), name="heartbeat-metrics")
        stack.callback(heartbeat.cancel)

        scheduler: Scheduler | None = None
        if settings.schedule.enabled:
            relister = Relister(bot=bot, readiness=readiness, metrics=metrics)
            relister.attach(listeners)
            stack.callback(relister.close)
            jobs = scheduled_jobs(
                settings.schedule,
                settings.sync,
                retention=settings.retention,
                desired=reader,
                guild_lock=reconciler.guild_lock,
                store=used,
                queue=queue,
                relister=relister,
                metrics=metrics,
                discord_counts=DiscordCountReader(bot.rest),
                redact=reconciler.redact,
                clock=clock,
            )
            scheduler = Scheduler(
                jobs,
                store=used,
                metrics=metrics,
                guild_ids=readiness.guild_ids,
                is_ready=readiness.is_ready,
                timezone=settings.schedule.timezone,
                misfire_grace_seconds=settings.schedule.misfire_grace_seconds,
            )
            # Started once the gateway is up (jobs skip guilds still loading); stopped before anything else.
            scheduler.start()
            stack.push_async_callback(scheduler.stop)

        yield App(
            settings=settings,
            metrics=metrics,
            store=store,
            bot=bot,
            readiness=readiness,
            reader=reader,
            reconciler=reconciler,
            queue=queue,
            activity=activity,
            backfill=backfill,
            listeners=listeners,
            commands=commands,
            metrics_server=server,
            scheduler=scheduler,
        )
        _LOGGER.info("shutting down")


@contextlib.asynccontextmanager
async def _failing_as(
    kind: FailureKind, what: str, *, only: type[Exception] = Exception, fix: str = ""
) -> AsyncGenerator[None, None]:
    """Turn a failure of one start-up step into the operator's one line; the original stays its cause."""
    try:
        yield
    except StartupError:
        raise
    except only as exc:
        reason = getattr(exc, "strerror", None) or (str(exc).splitlines() or [""])[0] or type(exc).__name__
        raise StartupError(kind, f"{what}: {reason}" + (f": {fix}" if fix else "")) from exc


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _ping(store: Store) -> typing.Callable[[], typing.Awaitable[CheckResult]]:
    async def check() -> CheckResult:
        return CheckResult.passed() if await store.ping() else CheckResult.failed("database does not answer")

    return check


async def _close_bot(bot: hikari.GatewayBot) -> None:
    with contextlib.suppress(Exception):
        await bot.close()


async def _publish_heartbeats(bot: hikari.GatewayBot, metrics: Metrics) -> None:
    while True:
        for shard_id, shard in bot.shards.items():
            # NaN until the first ACK (up to a heartbeat interval, 41 s on Discord): published as NaN, so the
            # series exists from start-up and says "not measured yet" rather than nothing.
            metrics.heartbeat_latency.labels(shard=str(shard_id)).set(shard.heartbeat_latency)
            metrics.gateway_connected.labels(shard=str(shard_id)).set(1 if shard.is_alive else 0)
        await asyncio.sleep(5.0)
