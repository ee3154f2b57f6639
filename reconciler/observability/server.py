"""The HTTP endpoints a scraper and an orchestrator poll: /metrics, /healthz and /readyz.

/healthz answers while the process runs (a restart would not help otherwise); /readyz answers 200 only
when every readiness check passes, and says which one fails and why. /metrics is always the classic
text format: promtool misreads OpenMetrics, and every Prometheus reads the classic one.
"""

from __future__ import annotations

__all__ = ["MetricsServer"]

import asyncio
import json
import logging
import typing

from aiohttp import web

from reconciler.observability.readiness import CheckResult

if typing.TYPE_CHECKING:
    import types
    from collections.abc import Mapping

    import typing_extensions

    from reconciler.observability.metrics import Metrics
    from reconciler.observability.readiness import ReadinessProbe

_LOGGER: typing.Final = logging.getLogger(__name__)
# Spelled out: prometheus_client's CONTENT_TYPE_LATEST announces 1.0.0 since 0.22, which older servers
# do not negotiate; generate_latest writes 0.0.4.
_CLASSIC_TEXT_FORMAT: typing.Final = "text/plain; version=0.0.4; charset=utf-8"


def _readiness_body(results: Mapping[str, CheckResult]) -> tuple[bool, str]:
    # No checks at all proves nothing: not ready.
    ready = bool(results) and all(result.ok for result in results.values())
    checks = {
        name: {
            "ok": result.ok,
            **({} if result.ok else {"reason": result.reason}),
            **({"detail": result.detail} if result.detail else {}),
        }
        for name, result in sorted(results.items())
    }
    return ready, json.dumps({"status": "ready" if ready else "not ready", "checks": checks})


class MetricsServer:
    """Serves the endpoints on one address, started and stopped as an async context manager.

    ``port=0`` binds a free port; `port` tells which one afterwards. Nothing listens beyond ``host``.
    """

    def __init__(self, metrics: Metrics, probe: ReadinessProbe, host: str = "127.0.0.1", port: int = 9108) -> None:
        self._metrics = metrics
        self._probe = probe
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The bound port; only known once started."""
        if self._port is None:
            raise RuntimeError("the metrics server is not running")
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` as a Prometheus scrape target spells it."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/healthz", self._serve_health)
        app.router.add_get("/readyz", self._serve_readiness)
        return app

    async def _serve_metrics(self, request: web.Request) -> web.StreamResponse:
        # Off the event loop: with many guilds the exposition is large enough to delay gateway heartbeats.
        body = await asyncio.to_thread(self._metrics.exposition)
        response = web.Response(body=body, headers={"Content-Type": _CLASSIC_TEXT_FORMAT})
        response.enable_compression()
        return response

    async def _serve_health(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok\n")

    async def _serve_readiness(self, request: web.Request) -> web.StreamResponse:
        try:
            results = await self._probe.check()
        except Exception as exc:
            # The probe's contract is not to raise; if it does, that is an answer too.
            _LOGGER.exception("readiness probe raised")
            results = {"probe": CheckResult.failed(f"{type(exc).__name__}: {exc}")}
        ready, body = _readiness_body(results)
        return web.Response(text=body, status=200 if ready else 503, content_type="application/json")

    async def __aenter__(self) -> typing_extensions.Self:
        # No access log: a scrape every few seconds would drown the lines an operator needs.
        runner = web.AppRunner(self._build_app(), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        _LOGGER.info("metrics server listening", extra={"address": self.address})
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            _LOGGER.info("metrics server stopped", extra={"address": self.address})
        self._port = None
