"""`reconciler db upgrade`: bring the database schema to the newest migration."""

from __future__ import annotations

__all__ = ["add_subcommand", "database_url"]

import asyncio
import logging
import pathlib
import sys
import typing

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from reconciler.failures import FailureKind
from reconciler.store.migrate import MigrationError, current_revision, upgrade_database

if typing.TYPE_CHECKING:
    import argparse

_LOGGER: typing.Final = logging.getLogger(__name__)


def add_subcommand(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:  # pyright: ignore[reportPrivateUsage]
    """Register `db upgrade`."""
    db = subparsers.add_parser("db", help="database maintenance")
    actions = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = actions.add_parser("upgrade", help="migrate the database to the newest schema (Alembic head)")
    upgrade.add_argument(
        "--database",
        metavar="URL",
        help="database URL (default: database.url from the settings)",
    )
    upgrade.set_defaults(func=_upgrade)


def database_url(args: argparse.Namespace) -> str:
    """The URL given with `--database`, else the settings' `database.url`."""
    return _database_url(args)


def _database_url(args: argparse.Namespace) -> str:
    if getattr(args, "database", None):
        return str(args.database)
    settings = getattr(args, "settings", None)
    if settings is None:
        from reconciler.config import load_settings  # noqa: PLC0415 - only when no URL was given

        config = getattr(args, "config", None)
        settings = load_settings(pathlib.Path(config) if config else None)
    return str(settings.database.url)


async def _migrate(url: str) -> str | None:
    try:
        await upgrade_database(url)
        return await current_revision(url)
    except BaseException:
        # aiosqlite reports a failed connection from its own thread: let it finish before the loop
        # closes, or it prints a second, confusing traceback.
        await asyncio.sleep(0.1)
        raise


def _upgrade(args: argparse.Namespace) -> int:
    url = _database_url(args)
    shown = sa.make_url(url).render_as_string(hide_password=True)
    try:
        revision = asyncio.run(_migrate(url))
    except (OSError, sa_exc.SQLAlchemyError, MigrationError) as exc:
        cause: BaseException = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig else exc
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        print(f"{shown}: upgrade failed, nothing was changed: {reason}", file=sys.stderr)
        return int(FailureKind.DATABASE)  # the database exit code of `run`, as the README's table lists
    print(f"{shown}: at revision {revision}")
    return 0
