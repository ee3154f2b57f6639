"""Checks a configuration needs before anything starts: the ones that must touch the outside world.

Validation in :mod:`reconciler.config` is pure; these checks open a connection, so they run only for
the commands that will use it (``run``, ``check-config``, ``db upgrade``).
"""

from __future__ import annotations

__all__ = ["check_database", "require_token"]

import asyncio
import pathlib
import typing

import sqlalchemy
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import create_async_engine

from reconciler.config import ConfigError
from reconciler.store.connect import create_engine

if typing.TYPE_CHECKING:
    from reconciler.config import Settings


def require_token(settings: Settings, source: str) -> None:
    """``run`` cannot start without a token; say where to put it."""
    if not settings.discord.token.get_secret_value().strip():
        raise ConfigError(
            f"{source}: discord.token: required to connect to Discord "
            "(set it in the file or in RECONCILER_DISCORD__TOKEN)"
        )


def _ensure_folder(database: pathlib.Path, source: str) -> None:
    folder = database.expanduser().resolve().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{source}: database.url: cannot create {folder}: {exc.strerror}") from None


async def check_database(settings: Settings, source: str) -> None:
    """Connect once and run ``SELECT 1``; the error names the key, never the password."""
    url = sqlalchemy.make_url(settings.database.url)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        _ensure_folder(pathlib.Path(url.database), source)
    timeout = settings.database.connect_timeout_seconds
    # On PostgreSQL the store's own engine: it turns libpq's `options=-c...` (a schema of one's own), which
    # asyncpg does not take as an argument, into server settings. The check must accept what the store accepts.
    engine = create_engine(url, pool_size=1) if url.get_backend_name() == "postgresql" else create_async_engine(url)
    try:
        async with asyncio.timeout(timeout + 1):
            async with engine.connect() as conn:
                await conn.execute(sqlalchemy.text("SELECT 1"))
    except (OSError, TimeoutError, sqlalchemy.exc.SQLAlchemyError) as exc:
        cause: BaseException = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig else exc
        reason = (str(cause).splitlines() or [type(cause).__name__])[0]
        raise ConfigError(f"{source}: database.url: cannot connect to {shown}: {reason}") from None
    finally:
        await engine.dispose()
