"""Shared fixtures: the sandbox and a hikari bot on it (tests/sandbox_support.py), databases of each backend."""

from __future__ import annotations

import pathlib
import sys
import typing

import pytest
import pytest_asyncio

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from database_view import DatabaseView
from pg_schemas import postgres_schema_url
from sandbox_support import gateway_bot_factory, sandbox_factory

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

__all__ = ["database_url", "db_view_factory", "gateway_bot_factory", "sandbox_factory"]


@pytest_asyncio.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
async def database_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[str]:
    """An empty database of each backend: a SQLite file, or a PostgreSQL schema of its own (dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    async with postgres_schema_url() as url:
        yield url


@pytest_asyncio.fixture
async def db_view_factory() -> AsyncIterator[Callable[[str], DatabaseView]]:
    """Read-only views of databases by URL (the test's own eyes on the rows), closed after the test."""
    views: list[DatabaseView] = []

    def make(url: str) -> DatabaseView:
        view = DatabaseView(url)
        views.append(view)
        return view

    yield make
    for view in views:
        await view.close()
