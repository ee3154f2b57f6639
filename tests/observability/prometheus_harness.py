"""A real Prometheus server for tests: started on a free loopback port, scraping one target every second.

Readiness is observed, never slept for: a fresh Prometheus takes about 6 s before its first sample can
be queried (it holds target updates back for 5 s), and a slow machine takes longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import time
import typing

import aiohttp
import attrs
import pytest

if typing.TYPE_CHECKING:
    import pathlib
    from collections.abc import AsyncIterator, Sequence

SCRAPE_JOB: typing.Final = "reconciler"
_START_ATTEMPTS: typing.Final = 3


def require_binary(name: str) -> str:
    """The binary's path; without it the test skips, or fails when CI=true (CI must have it)."""
    path = shutil.which(name)
    if path is not None:
        return path
    hint = "bash .ci/install-prometheus.sh installs it"
    if os.environ.get("CI", "").lower() in {"true", "1"}:
        pytest.fail(f"{name} is not on PATH and CI is set; {hint}")
    pytest.skip(f"{name} is not on PATH; {hint}")


@attrs.define(frozen=True, kw_only=True, slots=True)
class QueryResult:
    expr: str
    status: str
    error: str
    result: list[dict[str, typing.Any]]

    @property
    def ok(self) -> bool:
        return self.status == "success"


class PrometheusError(Exception):
    """Prometheus did not start or did not become ready in time."""


@attrs.define(kw_only=True)
class Prometheus:
    """A running server and a client for its HTTP API."""

    url: str
    session: aiohttp.ClientSession
    log_path: pathlib.Path

    async def query(self, expr: str) -> QueryResult:
        async with self.session.post(f"{self.url}/api/v1/query", data={"query": expr}) as response:
            body = await response.json()
        return QueryResult(
            expr=expr,
            status=body["status"],
            error=body.get("error", ""),
            result=body.get("data", {}).get("result", []),
        )

    async def label_values(self, label: str, match: str) -> list[str]:
        async with self.session.get(f"{self.url}/api/v1/label/{label}/values", params={"match[]": match}) as response:
            body = await response.json()
        return body["data"]

    async def rules(self) -> list[dict[str, typing.Any]]:
        async with self.session.get(f"{self.url}/api/v1/rules") as response:
            body = await response.json()
        return [rule for group in body["data"]["groups"] for rule in group["rules"]]

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(target: str, rule_files: Sequence[pathlib.Path]) -> str:
    # JSON is YAML: no YAML writer needed.
    return json.dumps(
        {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": SCRAPE_JOB, "static_configs": [{"targets": [target]}]}],
        }
    )


def _prepare(
    workdir: pathlib.Path, target: str, rule_files: Sequence[pathlib.Path]
) -> tuple[pathlib.Path, pathlib.Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(_config(target, rule_files))
    return config, workdir / "prometheus.log"


async def _poll(check: typing.Callable[[], typing.Awaitable[bool]], *, until: float, what: str) -> None:
    delay = 0.05
    while not await check():
        if time.monotonic() > until:
            raise PrometheusError(f"timed out waiting for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


@contextlib.asynccontextmanager
async def run_prometheus(
    binary: str,
    workdir: pathlib.Path,
    target: str,
    *,
    rule_files: Sequence[pathlib.Path] = (),
    min_samples: int = 3,
    within: float = 30.0,
) -> AsyncIterator[Prometheus]:
    """Start Prometheus scraping ``target`` (host:port) every second; ready once ``min_samples`` are stored.

    ``min_samples`` of 3 leaves every one-minute ``rate()`` at least two points to work with; ``within``
    bounds the whole start, in seconds.
    """
    config, log_path = _prepare(workdir, target, rule_files)
    until = time.monotonic() + within
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for attempt in range(_START_ATTEMPTS):
            port = _free_port()
            with log_path.open("ab") as log:
                process = await asyncio.create_subprocess_exec(
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / f'data-{attempt}'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                )
            server = Prometheus(url=f"http://127.0.0.1:{port}", session=session, log_path=log_path)
            try:

                async def ready(server: Prometheus = server, process: asyncio.subprocess.Process = process) -> bool:
                    if process.returncode is not None:
                        raise PrometheusError(f"prometheus exited with {process.returncode}:\n{server.log_tail()}")
                    try:
                        async with session.get(f"{server.url}/-/ready") as response:
                            return response.status == 200
                    except aiohttp.ClientError:
                        return False

                try:
                    await _poll(ready, until=until, what="prometheus /-/ready")
                except PrometheusError:
                    # Most likely the port was taken between choosing and binding it: try another.
                    if attempt + 1 < _START_ATTEMPTS and process.returncode is not None:
                        continue
                    raise

                async def scraped(server: Prometheus = server) -> bool:
                    up = f'up{{job="{SCRAPE_JOB}"}}'
                    result = await server.query(f"count_over_time({up}[1m]) and {up} == 1")
                    return bool(result.result) and float(result.result[0]["value"][1]) >= min_samples

                await _poll(scraped, until=until, what=f"{min_samples} scrapes of {target} (does it serve /metrics?)")
                yield server
                return
            finally:
                if process.returncode is None:
                    process.terminate()
                    try:
                        await asyncio.wait_for(process.wait(), timeout=10)
                    except TimeoutError:
                        process.kill()
                        await process.wait()
        raise PrometheusError(f"prometheus did not start after {_START_ATTEMPTS} attempts")


async def wait_for_rule_evaluations(server: Prometheus, *, within: float = 15.0) -> list[dict[str, typing.Any]]:
    """The loaded rules once every one has been evaluated at least once."""
    rules: list[dict[str, typing.Any]] = []

    async def evaluated() -> bool:
        nonlocal rules
        rules = await server.rules()
        return bool(rules) and all(not rule["lastEvaluation"].startswith("0001-") for rule in rules)

    await _poll(evaluated, until=time.monotonic() + within, what="every rule to be evaluated")
    return rules
