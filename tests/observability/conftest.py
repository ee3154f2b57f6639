"""Fixtures for the observability tests: metrics servers and the binaries of the Prometheus package."""

from __future__ import annotations

import contextlib
import typing

import pytest
import pytest_asyncio

from reconciler.observability.metrics import Metrics
from reconciler.observability.readiness import NamedChecks
from reconciler.observability.server import MetricsServer

from . import simulation
from .prometheus_harness import require_binary

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from reconciler.observability.readiness import ReadinessProbe


@pytest.fixture
def make_metrics() -> Callable[..., Metrics]:
    """Builds a `Metrics`, filled as a healthy bot fills it unless ``populated=False``."""

    def make(*, populated: bool = True) -> Metrics:
        metrics = Metrics()
        if populated:
            simulation.populate(metrics)
        return metrics

    return make


@pytest_asyncio.fixture
async def serve_metrics() -> AsyncIterator[Callable[..., Awaitable[MetricsServer]]]:
    """Starts a `MetricsServer` on a free loopback port; every one started is stopped after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            metrics: Metrics, probe: ReadinessProbe | None = None, *, host: str = "127.0.0.1"
        ) -> MetricsServer:
            server = MetricsServer(metrics, probe or NamedChecks({}), host, 0)
            return await stack.enter_async_context(server)

        yield start


@pytest.fixture
def promtool() -> str:
    return require_binary("promtool")
