"""Engines for the two backends, with the connection settings a bot that writes all day needs."""

from __future__ import annotations

__all__ = [
    "AUTOCHECKPOINT",
    "BULK_AUTOCHECKPOINT",
    "BULK_CACHE_KIB",
    "CACHE_KIB",
    "SQLITE_PRAGMAS",
    "create_engine",
    "dialect_of",
    "ensure_sqlite_folder",
]

import logging
import pathlib
import shlex
import typing

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

if typing.TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.pool import ConnectionPoolEntry

_LOGGER: typing.Final = logging.getLogger(__name__)

AUTOCHECKPOINT: typing.Final = 10_000
"""SQLite pages (4 KiB) of write-ahead log between checkpoints."""
BULK_AUTOCHECKPOINT: typing.Final = 100_000
"""The same while `Store.apply` writes batches."""

CACHE_KIB: typing.Final = 8 * 1024
"""Page cache of a pooled connection while it reads or writes a little.

A reader's cache is emptied whenever another connection has committed (WAL), so with gateway
writes every second it seldom outlives a query; what it held only swelled the process. At 64 MiB a
connection (the bulk size below), SQLite's memory in a 50,000-member soak peaked at 28-48 MB and the
driver threads' malloc arenas kept those peaks (docs/reliability.md, session 9).
"""
BULK_CACHE_KIB: typing.Final = 64 * 1024
"""The writer's page cache while a run writes its batches: upserts walk large indexes."""

SQLITE_PRAGMAS: typing.Final = (
    # Readers never block the writer and a commit is one append to the log.
    "PRAGMA journal_mode=WAL",
    # With WAL, NORMAL loses no committed transaction when the process crashes (only on power loss).
    "PRAGMA synchronous=NORMAL",
    # Checkpoint (and fsync) every ~40 MiB of log instead of every 4 MiB: bulk batches commit often;
    # after a checkpoint the log file is truncated back to 64 MiB at most.
    f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT}",
    "PRAGMA journal_size_limit=67108864",
    # Wait for another connection's write instead of failing with "database is locked".
    "PRAGMA busy_timeout=30000",
    # Each pooled connection has a private page cache. 8 MiB on every one; the writer raises its own
    # to `BULK_CACHE_KIB` for a run's batches (`SqliteBulk.begin_bulk`).
    f"PRAGMA cache_size=-{CACHE_KIB}",
    "PRAGMA temp_store=MEMORY",
)

BEGIN_OPTION: typing.Final = "reconciler_sqlite_begin"
"""Execution option naming the BEGIN flavour on SQLite ('IMMEDIATE' for write transactions)."""


def dialect_of(url: str | sa.URL) -> str:
    """'sqlite' or 'postgresql'."""
    return sa.make_url(url).get_backend_name()


def ensure_sqlite_folder(url: str | sa.URL) -> None:
    """Create the folder of a SQLite database file (the default `data/reconciler.db` included)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        pathlib.Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _postgres_settings(url: sa.URL) -> tuple[sa.URL, dict[str, str]]:
    # libpq's `options=-c name=value` in the URL, which asyncpg does not understand, becomes
    # `server_settings`: this is how a deployment (or a test) puts the tables in a schema of its own.
    options = url.query.get("options")
    if options is None:
        return url, {}
    settings: dict[str, str] = {}
    parts = shlex.split(options if isinstance(options, str) else " ".join(options))
    for index, part in enumerate(parts):
        if part == "-c" and index + 1 < len(parts):
            part = "-c" + parts[index + 1]  # noqa: PLW2901
        if part.startswith("-c") and "=" in part:
            name, _, value = part[2:].partition("=")
            settings[name.strip()] = value.strip()
    return url.difference_update_query(["options"]), settings


def create_engine(url: str | sa.URL, *, foreign_keys: bool = True, pool_size: int = 5) -> AsyncEngine:
    """An async engine for `url` ('sqlite+aiosqlite:///...' or 'postgresql+asyncpg://...').

    SQLite: WAL, synchronous=NORMAL, busy timeout; real transactions (SQLAlchemy emits BEGIN, so DDL
    and reads are transactional too); `foreign_keys` on at runtime, off while migrating.
    PostgreSQL: `options=-csearch_path=...` in the URL selects the schema.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        ensure_sqlite_folder(parsed)
        engine = create_async_engine(parsed, pool_size=pool_size, max_overflow=2 * pool_size)
        _configure_sqlite(engine, foreign_keys=foreign_keys)
        return engine
    parsed, server_settings = _postgres_settings(parsed)
    server_settings.setdefault("application_name", "reconciler")
    return create_async_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=2 * pool_size,
        pool_pre_ping=True,
        connect_args={"server_settings": server_settings},
    )


def _configure_sqlite(engine: AsyncEngine, *, foreign_keys: bool) -> None:
    pragmas = (*SQLITE_PRAGMAS, f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")

    def _on_connect(dbapi_connection: DBAPIConnection, connection_record: ConnectionPoolEntry) -> None:
        # sqlite3's legacy mode skips BEGIN before DDL and SELECT; we emit BEGIN ourselves (below).
        dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    def _on_begin(conn: sa.Connection) -> None:
        flavour = conn.get_execution_options().get(BEGIN_OPTION, "")
        conn.exec_driver_sql(f"BEGIN {flavour}".strip())

    event.listen(engine.sync_engine, "connect", _on_connect)
    event.listen(engine.sync_engine, "begin", _on_begin)
