"""End-to-end fixtures: the whole app (real hikari bot, real database) against the sandbox."""

from __future__ import annotations

import contextlib
import pathlib
import typing

import pytest_asyncio
from app_settings import app_settings

from reconciler.app import App, running_app
from reconciler.sandbox import DiscordSandbox

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable


AppFactory: typing.TypeAlias = "Callable[..., Awaitable[App]]"


@pytest_asyncio.fixture
async def app_factory(tmp_path: pathlib.Path) -> AsyncIterator[AppFactory]:
    """Starts the app against a sandbox and waits for every guild to be ready and reconciled."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            sandbox: DiscordSandbox,
            *,
            url: str | None = None,
            wait: bool = True,
            store_proxy: typing.Any = None,
            **sections: dict[str, typing.Any],
        ) -> App:
            url = url or f"sqlite+aiosqlite:///{tmp_path / 'reconciler.db'}"
            settings = app_settings(sandbox, url, **sections)
            app = await stack.enter_async_context(running_app(settings, store_proxy=store_proxy))
            if wait:
                assert await app.wait_ready(60), "guilds never became ready"
                assert await app.wait_idle(60), "start-up reconcile never finished"
            return app

        yield make


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[DiscordSandbox]:
    async with DiscordSandbox() as sb:
        yield sb
