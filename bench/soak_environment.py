"""What the soak runs against: the bot's optional settings, a fresh database, and the guild's churn."""

from __future__ import annotations

__all__ = [
    "COUNT_AUDIT_SECONDS",
    "OPTIONAL_SETTINGS",
    "RETENTION_MINUTES",
    "Churn",
    "SoakDatabase",
    "activity_is_exact",
    "setting_names",
    "soak_database",
]

import asyncio
import contextlib
import dataclasses
import pathlib
import typing
import uuid

import asyncpg
import pydantic
import sqlalchemy as sa
from soak_faults import DatabaseOutage, ProxyOutage, SqliteLockOutage

from reconciler.config import Settings
from reconciler.harness import TcpProxy

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from reconciler.demo.traffic import Traffic
    from reconciler.sandbox import DiscordSandbox

COUNT_AUDIT_SECONDS: typing.Final = 30.0
RETENTION_MINUTES: typing.Final = 2.0
"""Bookkeeping retention when the bot has the settings: minutes, so a soak sees it apply."""
OPTIONAL_SETTINGS: typing.Final = {
    "retention.sync_runs_days": ("RETENTION__SYNC_RUNS_DAYS", str(RETENTION_MINUTES / 1440)),
    "retention.scheduler_slots_days": ("RETENTION__SCHEDULER_SLOTS_DAYS", str(RETENTION_MINUTES / 1440)),
    "schedule.count_audit_seconds": ("SCHEDULE__COUNT_AUDIT_SECONDS", str(COUNT_AUDIT_SECONDS)),
    "schedule.count_audit_jitter_seconds": ("SCHEDULE__COUNT_AUDIT_JITTER_SECONDS", "0"),
}

# -- what the bot's settings model offers -------------------------------------------------------------


def setting_names(model: type[pydantic.BaseModel] = Settings, prefix: str = "") -> set[str]:
    """Dotted names of every setting (`schedule.drift_check_seconds`, ...)."""
    names: set[str] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            names |= setting_names(annotation, f"{prefix}{name}.")
        else:
            names.add(prefix + name)
    return names


def activity_is_exact(names: set[str]) -> bool:
    """Exactly-once counting (issue 16) comes with a backfill: its settings say it is there."""
    return any("backfill" in name for name in names)


# -- the database -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SoakDatabase:
    bot_url: str
    """What the bot connects to (through the proxy for PostgreSQL)."""
    view_url: str
    """What the soak reads with: direct, so it can look during an outage."""
    outage: DatabaseOutage
    describe: str


@contextlib.asynccontextmanager
async def soak_database(url: str | None, work_dir: pathlib.Path) -> AsyncIterator[SoakDatabase]:
    """A fresh SQLite file in `work_dir`, or a fresh schema on the PostgreSQL server of `url` (dropped after)."""
    if url is None or url.startswith("sqlite"):
        path = work_dir / "soak.db" if url is None else pathlib.Path(sa.make_url(url).database or "")
        if path.exists():
            raise SystemExit(f"{path} exists: the soak needs a fresh database")
        sqlite_url = f"sqlite+aiosqlite:///{path}"
        yield SoakDatabase(bot_url=sqlite_url, view_url=sqlite_url, outage=SqliteLockOutage(path), describe=str(path))
        return
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise SystemExit(f"--database: {parsed.get_backend_name()} is not supported (sqlite or postgresql)")
    schema = f"soak_{uuid.uuid4().hex[:12]}"
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await connection.close()
    proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
    try:
        await proxy.restore()
        base = parsed.set(drivername="postgresql+asyncpg")
        through_proxy = base.set(host="127.0.0.1", port=proxy.port)
        search_path = f"?options=-csearch_path%3D{schema}"
        yield SoakDatabase(
            bot_url=through_proxy.render_as_string(hide_password=False) + search_path,
            view_url=base.render_as_string(hide_password=False) + search_path,
            outage=ProxyOutage(proxy),
            describe=f"{base.render_as_string(hide_password=True)} schema {schema}",
        )
    finally:
        await proxy.cut()
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await connection.close()


# -- traffic ------------------------------------------------------------------------------------------


class Churn:
    """`Traffic` at a steady rate in the background, stopped for every quiescent check."""

    def __init__(self, traffic: Traffic, sandbox: DiscordSandbox, rate: float) -> None:
        self._traffic = traffic
        self._sandbox = sandbox
        self._rate = rate
        self._running = asyncio.Event()
        self.kinds: frozenset[str] | None = None
        """Restricts the kinds of change (None: the usual mix)."""

    async def run(self) -> None:
        owed = 0.0
        tick = 0.1
        while True:
            await self._running.wait()
            owed += self._rate * tick
            due = int(owed)
            if due:
                self._traffic.random_changes(due, kinds=self.kinds)
                owed -= due
            await asyncio.sleep(tick)

    def start(self) -> None:
        self._running.set()

    async def stop(self) -> None:
        self._running.clear()
        await asyncio.sleep(0.15)  # the loop's current tick
        await self._sandbox.flush()
