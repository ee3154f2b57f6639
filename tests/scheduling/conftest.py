"""Scheduler fixtures: databases of each backend, stores on them (one per simulated process), schedulers."""

from __future__ import annotations

import contextlib
import typing

import pytest
import pytest_asyncio
from pg_schemas import postgres_schema_url

from reconciler.observability.metrics import Metrics
from reconciler.scheduling import Scheduler
from reconciler.store import SqlStore

if typing.TYPE_CHECKING:
    import pathlib
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from reconciler.scheduling import JobSpec


@pytest_asyncio.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
async def database_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'scheduler.db'}"
        return
    async with postgres_schema_url() as url:
        yield url


SchedulerFactory: typing.TypeAlias = "Callable[..., Awaitable[tuple[Scheduler, Metrics]]]"


@pytest_asyncio.fixture
async def scheduler_factory(database_url: str) -> AsyncIterator[SchedulerFactory]:
    """Makes started schedulers, each with its own store on the shared database (as separate processes)."""
    async with contextlib.AsyncExitStack() as stack:
        migrated: list[bool] = []

        async def make(
            jobs: Sequence[JobSpec],
            *,
            guilds: Sequence[int],
            ready: Callable[[int], bool] = lambda _: True,
            grace: int = 5,
            start: bool = True,
        ) -> tuple[Scheduler, Metrics]:
            store = await SqlStore.open(database_url)
            stack.push_async_callback(store.close)
            if not migrated:
                await store.upgrade()
                migrated.append(True)
            metrics = Metrics()
            scheduler = Scheduler(
                jobs,
                store=store,
                metrics=metrics,
                guild_ids=lambda: guilds,
                is_ready=ready,
                misfire_grace_seconds=grace,
            )
            if start:
                scheduler.start()
                stack.push_async_callback(scheduler.stop)
            return scheduler, metrics

        yield make
