"""/metrics, /healthz and /readyz over real HTTP."""

from __future__ import annotations

import asyncio
import socket
import typing

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.observability.readiness import CheckResult, NamedChecks
from reconciler.observability.server import MetricsServer

if typing.TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from reconciler.observability.metrics import Metrics


async def _passes() -> CheckResult:
    return CheckResult.passed()


async def _gateway_down() -> CheckResult:
    return CheckResult.failed("shard 0 disconnected")


async def _refused() -> CheckResult:
    raise ConnectionRefusedError("connection refused")


async def _hangs() -> CheckResult:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def _get(url: str, **kwargs: typing.Any) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as response:
        return response.status, dict(response.headers), await response.read()


@pytest.mark.asyncio
async def test_metrics_serves_the_classic_text_format(
    make_metrics: Callable[..., Metrics], serve_metrics: Callable[..., Awaitable[MetricsServer]]
) -> None:
    metrics = make_metrics()
    server = await serve_metrics(metrics)

    status, headers, body = await _get(f"{server.url}/metrics")

    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}
    assert families["reconciler_sync_runs"].type == "counter"
    errors = {s.labels["stage"]: s.value for s in families["reconciler_errors"].samples if s.name.endswith("_total")}
    assert errors["store"] == 2
    assert errors["gateway"] == 0
    assert body == metrics.exposition()


@pytest.mark.asyncio
async def test_metrics_are_compressed_when_the_scraper_asks(
    make_metrics: Callable[..., Metrics], serve_metrics: Callable[..., Awaitable[MetricsServer]]
) -> None:
    metrics = make_metrics()
    server = await serve_metrics(metrics)

    status, headers, body = await _get(f"{server.url}/metrics", headers={"Accept-Encoding": "gzip"})

    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert body == metrics.exposition()


@pytest.mark.asyncio
async def test_healthz_answers_ok_even_when_not_ready(
    make_metrics: Callable[..., Metrics], serve_metrics: Callable[..., Awaitable[MetricsServer]]
) -> None:
    server = await serve_metrics(make_metrics(), NamedChecks({"gateway": _gateway_down}))

    status, _, body = await _get(f"{server.url}/healthz")

    assert (status, body) == (200, b"ok\n")


@pytest.mark.asyncio
async def test_readyz_is_200_when_every_check_passes(
    make_metrics: Callable[..., Metrics], serve_metrics: Callable[..., Awaitable[MetricsServer]]
) -> None:
    probe = NamedChecks({"gateway": _passes, "database": _passes, "guilds": _passes})
    server = await serve_metrics(make_metrics(), probe)

    async with aiohttp.ClientSession() as session, session.get(f"{server.url}/readyz") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.json() == {
            "status": "ready",
            "checks": {"database": {"ok": True}, "gateway": {"ok": True}, "guilds": {"ok": True}},
        }


@pytest.mark.asyncio
async def test_readyz_is_503_and_says_why_each_failing_check_fails(
    make_metrics: Callable[..., Metrics], serve_metrics: Callable[..., Awaitable[MetricsServer]]
) -> None:
    probe = NamedChecks(
        {"gateway": _gateway_down, "database": _refused, "guilds": _hangs, "scheduler": _passes}, timeout=0.05
    )
    server = await serve_metrics(make_metrics(), probe)

    async with aiohttp.ClientSession() as session, session.get(f"{server.url}/readyz") as response:
        assert response.status == 503
        assert await response.json() == {
            "status": "not ready",
            "checks": {
                "database": {"ok": False, "reason": "ConnectionRefusedError: connection refused"},
                "gateway": {"ok": False, "reason": "shard 0 disconnected"},
                "guilds": {"ok": False, "reason": "no answer within 0.05 s"},
                "scheduler": {"ok": True},
            },
        }


@pytest.mark.asyncio
async def test_readyz_without_any_check_is_not_ready(
    make_metrics: Callable[..., Metrics], serve_metrics: Callable[..., Awaitable[MetricsServer]]
) -> None:
    server = await serve_metrics(make_metrics(), NamedChecks({}))

    status, _, _ = await _get(f"{server.url}/readyz")

    assert status == 503


class _BrokenProbe:
    async def check(self) -> dict[str, CheckResult]:
        raise RuntimeError("probe bug")


@pytest.mark.asyncio
async def test_readyz_is_503_when_the_probe_itself_raises(
    make_metrics: Callable[..., Metrics], serve_metrics: Callable[..., Awaitable[MetricsServer]]
) -> None:
    server = await serve_metrics(make_metrics(), _BrokenProbe())

    async with aiohttp.ClientSession() as session, session.get(f"{server.url}/readyz") as response:
        assert response.status == 503
        assert await response.json() == {
            "status": "not ready",
            "checks": {"probe": {"ok": False, "reason": "RuntimeError: probe bug"}},
        }


@pytest.mark.asyncio
async def test_unknown_paths_are_404(
    make_metrics: Callable[..., Metrics], serve_metrics: Callable[..., Awaitable[MetricsServer]]
) -> None:
    server = await serve_metrics(make_metrics())

    status, _, _ = await _get(f"{server.url}/")

    assert status == 404


def _accepts_connections(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


@pytest.mark.asyncio
async def test_listens_only_on_the_configured_address(
    make_metrics: Callable[..., Metrics], serve_metrics: Callable[..., Awaitable[MetricsServer]]
) -> None:
    server = await serve_metrics(make_metrics(), host="127.0.0.1")

    assert server.port > 0
    assert server.address == f"127.0.0.1:{server.port}"
    assert _accepts_connections("127.0.0.1", server.port)
    # 127.0.0.2 is loopback too on Linux: only a wildcard bind would answer there.
    assert not _accepts_connections("127.0.0.2", server.port)


@pytest.mark.asyncio
async def test_stopping_releases_the_port(make_metrics: Callable[..., Metrics]) -> None:
    async with MetricsServer(make_metrics(), NamedChecks({}), "127.0.0.1", 0) as server:
        port = server.port
        assert _accepts_connections("127.0.0.1", port)

    assert not _accepts_connections("127.0.0.1", port)
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.port
