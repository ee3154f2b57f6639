"""`reconciler run` as a real process: configured through the environment, observed through its endpoints."""

from __future__ import annotations

__all__ = ["BotProcess", "Scrape", "bot_environment"]

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
import typing

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

if typing.TYPE_CHECKING:
    import pathlib

    from reconciler.sandbox import DiscordSandbox

_LISTENING: typing.Final = re.compile(r'event="metrics server listening" address=(\S+)')


def bot_environment(sandbox: DiscordSandbox, database_url: str, **settings: str) -> dict[str, str]:
    """The process environment: ours without RECONCILER_* variables, then the sandbox, the database, `settings`.

    `settings` keys are RECONCILER_ names without the prefix, e.g. ``DATABASE__BATCH_SIZE="500"``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env.update(
        {
            "RECONCILER_DISCORD__TOKEN": sandbox.token,
            "RECONCILER_DISCORD__REST_URL": sandbox.rest_url,
            "RECONCILER_DATABASE__URL": database_url,
            "RECONCILER_OBSERVABILITY__METRICS_ADDRESS": "127.0.0.1:0",
            "RECONCILER_SCHEDULE__ENABLED": "false",
        }
    )
    env.update({f"RECONCILER_{key}": value for key, value in settings.items()})
    return env


class Scrape:
    """One /metrics exposition, summed over the samples whose labels include the ones asked for."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (sample.name, dict(sample.labels), float(sample.value))
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        return sum(
            value
            for sample_name, sample_labels, value in self.samples
            if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
        )

    def label_values(self, name: str, label: str) -> set[str]:
        return {labels[label] for sample_name, labels, _ in self.samples if sample_name == name and label in labels}


class BotProcess:
    """`python -m reconciler run` in `cwd` (no config.toml there), its output in `log_path`."""

    def __init__(self, env: dict[str, str], *, cwd: pathlib.Path, log_path: pathlib.Path) -> None:
        self._env = env
        self._cwd = cwd
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self._metrics_address: str | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        # Appended to, so that a restart keeps the first life's lines; the address is read from this life's.
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._metrics_address = None
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "reconciler",
                "run",
                cwd=self._cwd,
                env=self._env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    async def metrics_url(self, within: float = 30.0) -> str:
        """http://host:port of the process's metrics server, read from its start-up log line."""
        deadline = time.monotonic() + within
        while self._metrics_address is None:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                match = _LISTENING.search(log.read().decode("utf-8", "replace"))
            if match:
                self._metrics_address = match.group(1)
                break
            if not self.alive or time.monotonic() > deadline:
                msg = f"no metrics server (alive={self.alive}); log:\n{self.tail()}"
                raise AssertionError(msg)
            await asyncio.sleep(0.05)
        return f"http://{self._metrics_address}"

    async def _get(self, path: str) -> tuple[int, str]:
        url = await self.metrics_url()
        async with aiohttp.ClientSession() as session, session.get(url + path) as response:
            return response.status, await response.text()

    async def scrape(self) -> Scrape:
        status, text = await self._get("/metrics")
        assert status == 200, text
        return Scrape(text)

    async def readyz(self) -> tuple[int, dict[str, typing.Any]]:
        status, text = await self._get("/readyz")
        return status, json.loads(text)

    async def kill(self) -> int:
        """SIGKILL: no handler runs, nothing is flushed; returns the exit status (-9)."""
        assert self.process is not None
        self.process.kill()
        return await self.process.wait()

    async def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for the orderly stop; SIGKILL after `timeout` (and fail the caller's assert)."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                return await self.process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
            return -999

    async def close(self) -> None:
        """Teardown: make sure the process is gone."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
