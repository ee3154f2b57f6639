"""Fault-injection fixtures: the sandbox, databases of each backend, the app in-process or as real processes."""

from __future__ import annotations

import contextlib
import typing
import uuid

import pytest
import pytest_asyncio
from pg_schemas import postgres_schema_url
from reliability_support import AppFactory, BotFactory, UrlFactory, app_settings

from reconciler.app import App, running_app
from reconciler.harness import BotProcess
from reconciler.sandbox import DiscordSandbox

if typing.TYPE_CHECKING:
    import pathlib
    from collections.abc import AsyncIterator


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a fault test that takes more than ~10 s (deselect with -m 'not slow')")


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[DiscordSandbox]:
    async with DiscordSandbox() as sb:
        yield sb


@pytest_asyncio.fixture
async def url_factory(tmp_path: pathlib.Path) -> AsyncIterator[UrlFactory]:
    """Empty databases: `await make("sqlite")` (a file) or `await make("postgresql")` (a schema of its own)."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(backend: str) -> str:
            if backend == "sqlite":
                return f"sqlite+aiosqlite:///{tmp_path / uuid.uuid4().hex[:8]}.db"
            return await stack.enter_async_context(postgres_schema_url())

        yield make


@pytest_asyncio.fixture
async def app_factory() -> AsyncIterator[AppFactory]:
    """Starts the app in this process against a sandbox; `wait` for every guild ready and reconciled."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            sandbox: DiscordSandbox, url: str, *, wait: bool = True, **sections: dict[str, typing.Any]
        ) -> App:
            app = await stack.enter_async_context(running_app(app_settings(sandbox, url, **sections)))
            if wait:
                assert await app.wait_ready(60), "guilds never became ready"
                assert await app.wait_idle(60), "start-up reconcile never finished"
            return app

        yield make


@pytest_asyncio.fixture
async def bot_factory(tmp_path: pathlib.Path) -> AsyncIterator[BotFactory]:
    """Starts `reconciler run` processes (`await make(env, name=...)`); every one is killed at teardown."""
    bots: list[BotProcess] = []

    async def make(env: dict[str, str], *, name: str = "bot") -> BotProcess:
        bot = BotProcess(env, cwd=tmp_path, log_path=tmp_path / f"{name}.log")
        bots.append(bot)
        await bot.start()
        return bot

    yield make
    for bot in bots:
        await bot.close()
