"""Alembic driven from code: `reconciler db upgrade` and the bot's start-up bring the schema to head."""

from __future__ import annotations

__all__ = [
    "MIGRATIONS",
    "MigrationError",
    "current_revision",
    "head_revision",
    "pending_model_changes",
    "upgrade_database",
]

import logging
import pathlib
import typing

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from reconciler.store.connect import BEGIN_OPTION, create_engine
from reconciler.store.tables import metadata

if typing.TYPE_CHECKING:
    import os

_LOGGER: typing.Final = logging.getLogger(__name__)

MIGRATIONS: typing.Final = pathlib.Path(__file__).parent / "migrations"
# Two processes starting at once must not both create the tables (PostgreSQL; SQLite's BEGIN IMMEDIATE
# serialises them already).
_UPGRADE_LOCK_KEY: typing.Final = 0x7265636F6E63  # "reconc"


class MigrationError(RuntimeError):
    """The schema could not be brought up to date (nothing of the failed upgrade was kept)."""


def _config(script_location: str | os.PathLike[str] | None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location or MIGRATIONS))
    return config


def head_revision(script_location: str | os.PathLike[str] | None = None) -> str | None:
    """The newest revision the code knows."""
    return ScriptDirectory.from_config(_config(script_location)).get_current_head()


async def upgrade_database(
    url: str | sa.URL, *, revision: str = "head", script_location: str | os.PathLike[str] | None = None
) -> None:
    """Migrate the database at `url` to `revision`, all in one transaction.

    Alembic's `command.upgrade` is synchronous and its async env would start a second event loop, so
    the connection is handed to it through `config.attributes` inside `run_sync`. On SQLite foreign
    keys are off while migrating (batch mode copies tables) and checked before the commit; the
    engine emits BEGIN itself, so a failed migration leaves no half-built schema.
    """
    config = _config(script_location)
    engine = create_engine(url, foreign_keys=False, pool_size=1)
    try:
        async with engine.connect() as plain:
            connection = await plain.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})
            async with connection.begin():
                if connection.dialect.name == "postgresql":
                    await connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK_KEY})
                await connection.run_sync(_upgrade, config, revision)
                if connection.dialect.name == "sqlite":
                    broken = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).fetchall()
                    if broken:
                        msg = f"foreign keys broken by the migration: {broken[:5]}"
                        raise MigrationError(msg)
    finally:
        await engine.dispose()
    _LOGGER.info("database upgraded", extra={"revision": revision})


def _upgrade(connection: sa.Connection, config: Config, revision: str) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def current_revision(url: str | sa.URL) -> str | None:
    """The revision the database is at (None when it was never migrated)."""
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
    finally:
        await engine.dispose()


async def pending_model_changes(url: str | sa.URL) -> list[typing.Any]:
    """What `alembic check` would report: differences between the migrated database and the models."""
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_compare)
    finally:
        await engine.dispose()


def _compare(connection: sa.Connection) -> list[typing.Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "compare_server_default": connection.dialect.name != "sqlite",
            "target_metadata": metadata,
        },
    )
    return list(compare_metadata(context, metadata))
