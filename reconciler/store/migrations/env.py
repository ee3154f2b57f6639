"""Alembic environment: runs on the connection `upgrade_database` hands over, or on its own for the CLI."""

from __future__ import annotations

import asyncio
import logging.config
import os
import typing

from alembic import context

from reconciler.store.connect import create_engine
from reconciler.store.tables import metadata

if typing.TYPE_CHECKING:
    import sqlalchemy as sa

_LOGGER: typing.Final = logging.getLogger(__name__)

config = context.config


def _configure(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters tables by copying them ("batch"); foreign keys are off for that (see upgrade_database).
        render_as_batch=True,
        compare_type=True,
        # SQLite reflects defaults as text that never compares equal to the model's: false differences.
        compare_server_default=connection.dialect.name != "sqlite",
        # One transaction for the whole upgrade: on failure nothing of it stays (SQLite DDL included,
        # because our engine emits BEGIN itself).
        transaction_per_migration=False,
        transactional_ddl=True,
    )


def run_migrations_on(connection: sa.Connection) -> None:
    """Run the requested command's migrations on an open connection."""
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    return (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("RECONCILER_DATABASE__URL")
        or config.get_main_option("sqlalchemy.url")
        or "sqlite+aiosqlite:///data/reconciler.db"
    )


async def _run_standalone() -> None:
    engine = create_engine(_url(), foreign_keys=False, pool_size=1)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_migrations_on)
    finally:
        await engine.dispose()


def _main() -> None:
    if context.is_offline_mode():
        context.configure(url=_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection: sa.Connection | None = config.attributes.get("connection")
    if connection is not None:
        run_migrations_on(connection)
        return
    if config.config_file_name is not None:
        logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)
    asyncio.run(_run_standalone())


_main()
