"""End to end: a real Prometheus scrapes the real bot; every panel query and alert expression runs through its API.

The bot is the whole app (`running_app`) against the sandbox, with the scheduler on and a little of every
kind of traffic (joins, role changes, messages, `/sync`, each scheduled job), so every labelled series a
panel reads exists. A panel that queries a metric the bot does not export returns nothing, and fails here.
`simulated_bot` (a metrics server over a filled `Metrics`) stays for checking the harness itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import typing

import pytest
import pytest_asyncio
from sandbox_support import wait_until

from reconciler.app import running_app
from reconciler.config import settings_from
from reconciler.observability.metrics import Metrics
from reconciler.observability.readiness import CheckResult, NamedChecks
from reconciler.observability.server import MetricsServer
from reconciler.sandbox import DiscordSandbox

from . import assets, promql, simulation
from .prometheus_harness import Prometheus, require_binary, run_prometheus, wait_for_rule_evaluations

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterator

# SCRAPE TARGET: the fixture whose value ("host:port") Prometheus scrapes.
SCRAPE_TARGET_FIXTURE: typing.Final = "real_bot"

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _passes() -> CheckResult:
    return CheckResult.passed()


async def _traffic(metrics: Metrics) -> None:
    while True:
        simulation.tick(metrics)
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def simulated_bot() -> AsyncIterator[str]:
    """A metrics server over a healthy bot's metrics, with live traffic ticking."""
    metrics = Metrics()
    simulation.populate(metrics)
    probe = NamedChecks({"gateway": _passes, "database": _passes, "guilds": _passes})
    async with MetricsServer(metrics, probe, "127.0.0.1", 0) as server:
        traffic = asyncio.create_task(_traffic(metrics))
        try:
            yield server.address
        finally:
            traffic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await traffic


async def _live_traffic(sandbox: DiscordSandbox, guild_id: int) -> None:
    channel = next(iter(sandbox.channels(guild_id)))
    humans = [uid for uid, m in sandbox.members(guild_id).items() if not m.bot]
    tick = 0
    while True:
        tick += 1
        sandbox.post_message_nowait(channel, humans[tick % len(humans)], "tick")
        if tick % 5 == 0:
            sandbox.update_member_nowait(guild_id, humans[tick % len(humans)], nick=f"tick-{tick}")
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def real_bot(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """The app against the sandbox; every job and command has run once; traffic keeps ticking."""
    folder = tmp_path_factory.mktemp("real-bot")
    async with DiscordSandbox() as sandbox:
        guild_id = sandbox.create_guild(members=400, roles=8, seed=41)
        sandbox.faults.member_request_window_s = 1.0
        settings = settings_from(
            {
                "discord": {"token": sandbox.token, "rest_url": sandbox.rest_url},
                "database": {"url": f"sqlite+aiosqlite:///{folder / 'bot.db'}"},
                "sync": {"activity_flush_seconds": 0.5},
                "schedule": {"drift_check_seconds": 5.0, "drift_check_jitter_seconds": 0.0},
                "observability": {"metrics_address": "127.0.0.1:0"},
            }
        )
        async with running_app(settings) as app:
            assert await app.wait_ready(30)
            assert await app.wait_idle(30)
            assert app.scheduler is not None
            assert app.metrics_server is not None
            role_ids = [r for r in sandbox.roles(guild_id) if r != guild_id]
            joiner = await sandbox.add_member(guild_id, username="joiner", roles=role_ids[:1])
            await sandbox.update_member(guild_id, joiner, roles=role_ids[1:3])
            await sandbox.create_role(guild_id, name="Observed")
            for job in ("drift_check", "relist", "cleanup", "count_audit"):
                await app.scheduler.run_now(job)
            await wait_until(lambda: any(c["name"] == "sync" for c in sandbox.commands()))
            interaction = await sandbox.invoke_command(guild_id, sandbox.admin_user_id(guild_id), ["sync", "users"])
            await sandbox.wait_for_responses(interaction, count=2, timeout=30)
            traffic = asyncio.create_task(_live_traffic(sandbox, guild_id))
            try:
                yield app.metrics_server.address
            finally:
                traffic.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await traffic


@pytest.fixture(scope="module")
def scrape_target(request: pytest.FixtureRequest) -> str:
    # Synchronous on purpose: an async fixture cannot set another one up by name from inside the loop.
    return request.getfixturevalue(SCRAPE_TARGET_FIXTURE)


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    return require_binary("prometheus")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def prometheus(
    prometheus_binary: str, scrape_target: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Prometheus]:
    """A real Prometheus scraping the target every second and evaluating grafana/alerts.yml.

    ``prometheus_binary`` comes first so that a missing binary skips before the target is started.
    """
    workdir = tmp_path_factory.mktemp("prometheus")
    async with run_prometheus(prometheus_binary, workdir, scrape_target, rule_files=[assets.ALERTS]) as server:
        yield server


def _describe(failures: list[str]) -> str:
    return "\n".join(failures)


async def test_every_dashboard_query_parses_and_returns_data(prometheus: Prometheus) -> None:
    queries = assets.evaluable_queries(assets.load_dashboard())
    failures: list[str] = []
    for query in queries:
        result = await prometheus.query(query.expr)
        if not result.ok:
            failures.append(f"{query.panel} {query.ref_id}: does not parse: {result.error}\n  {query.expr}")
        elif not result.result:
            failures.append(f"{query.panel} {query.ref_id}: no data\n  {query.expr}")

    assert queries
    assert not failures, _describe(failures)


async def test_the_guild_variable_lists_the_guilds(prometheus: Prometheus) -> None:
    (variable,) = assets.load_dashboard()["templating"]["list"]
    assert variable["query"]["query"] == "label_values(reconciler_guild_ready, guild)"

    guilds = await prometheus.label_values("guild", "reconciler_guild_ready")

    assert guilds
    assert all(guild.isdigit() for guild in guilds)


async def test_every_alert_expression_parses_and_sees_its_series(prometheus: Prometheus) -> None:
    # While all is well an alert expression is empty; its bool form keeps the series it compares, which
    # shows the metrics exist with the labels it matches on.
    failures: list[str] = []
    for rule in assets.load_alert_rules():
        result = await prometheus.query(rule.expr)
        if not result.ok:
            failures.append(f"{rule.name}: does not parse: {result.error}\n  {rule.expr}")
            continue
        seen = await prometheus.query(promql.bool_form(rule.expr))
        if not seen.ok or not seen.result:
            failures.append(f"{rule.name}: reads no series ({seen.error or 'empty'})\n  {seen.expr}")

    assert not failures, _describe(failures)


async def test_prometheus_loads_and_evaluates_every_alert_rule(prometheus: Prometheus) -> None:
    rules = await wait_for_rule_evaluations(prometheus)

    assert sorted(rule["name"] for rule in rules) == sorted(rule.name for rule in assets.load_alert_rules())
    unhealthy = [f"{rule['name']}: {rule.get('lastError', '')}" for rule in rules if rule["health"] != "ok"]
    assert not unhealthy, _describe(unhealthy)


async def test_a_healthy_bot_raises_no_alert(prometheus: Prometheus) -> None:
    rules = await wait_for_rule_evaluations(prometheus)

    active = {rule["name"]: rule["state"] for rule in rules if rule["state"] != "inactive"}
    assert active == {}
