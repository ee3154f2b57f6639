"""Store fixtures: one contract, every backend (SQLite in a temp dir, PostgreSQL in a schema per test)."""

from __future__ import annotations

import datetime
import os
import socket
import typing
import uuid

import asyncpg
import pytest
import pytest_asyncio

from reconciler.store import SqlStore

if typing.TYPE_CHECKING:
    import pathlib
    from collections.abc import AsyncIterator, Awaitable, Callable

POSTGRES_HOST: typing.Final = "127.0.0.1"
POSTGRES_PORT: typing.Final = 5432
POSTGRES_DSN: typing.Final = f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/test"

BACKENDS: typing.Final = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]

_postgres_reachable: list[bool] = []


def require_postgres() -> None:
    """Skip (or fail under CI=true) when the PostgreSQL server is not listening."""
    if not _postgres_reachable:
        try:
            with socket.create_connection((POSTGRES_HOST, POSTGRES_PORT), timeout=2):
                _postgres_reachable.append(True)
        except OSError:
            _postgres_reachable.append(False)
    if not _postgres_reachable[0]:
        reason = f"PostgreSQL is not reachable at {POSTGRES_HOST}:{POSTGRES_PORT}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
        pytest.skip(reason)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime.datetime) -> None:
        self.now = start

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, **delta: float) -> datetime.datetime:
        self.now += datetime.timedelta(**delta)
        return self.now


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return typing.cast("str", request.param)


@pytest_asyncio.fixture
async def database_url_factory(backend: str, tmp_path: pathlib.Path) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Makes empty databases of the test's backend: a file, or a schema of its own on PostgreSQL."""
    schemas: list[str] = []

    async def make() -> str:
        if backend == "sqlite":
            return f"sqlite+aiosqlite:///{tmp_path / uuid.uuid4().hex[:8]}/store.db"
        require_postgres()
        schema = f"test_{uuid.uuid4().hex[:12]}"
        connection = await asyncpg.connect(POSTGRES_DSN)
        try:
            await connection.execute(f'CREATE SCHEMA "{schema}"')
        finally:
            await connection.close()
        schemas.append(schema)
        return f"postgresql+asyncpg://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/test?options=-csearch_path%3D{schema}"

    yield make
    if schemas:
        connection = await asyncpg.connect(POSTGRES_DSN)
        try:
            for schema in schemas:
                await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await connection.close()


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.datetime(2024, 3, 1, 12, 0, tzinfo=datetime.UTC))


StoreFactory: typing.TypeAlias = "Callable[..., Awaitable[SqlStore]]"


@pytest_asyncio.fixture
async def store_factory(
    database_url_factory: Callable[[], Awaitable[str]], clock: Clock
) -> AsyncIterator[StoreFactory]:
    """Makes migrated stores, each on a new database unless `url=` names one (as a second process would)."""
    stores: list[SqlStore] = []
    migrated: set[str] = set()

    async def make(*, url: str | None = None, batch_size: int = 1000) -> SqlStore:
        url = url or await database_url_factory()
        store = await SqlStore.open(url, batch_size=batch_size, clock=clock)
        stores.append(store)
        if url not in migrated:
            await store.upgrade()
            migrated.add(url)
        return store

    yield make
    for store in stores:
        await store.close()
