"""Scheduler fixtures: databases of each backend, stores on them (one per simulated process), schedulers."""

from __future__ import annotations

import contextlib
import typing

import pytest_asyncio

from reconciler.observability.metrics import Metrics
from reconciler.scheduling import Scheduler
from reconciler.store import SqlStore

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from reconciler.scheduling import JobSpec


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
