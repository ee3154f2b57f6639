"""Checks a configuration needs before anything starts: the ones that must look at the outside world.

Validation in :mod:`reconciler.config` is pure; these checks read the file system or open a connection,
so they run only for the commands that will use it (``run``, ``check-config``, ``db upgrade``).
``check-config`` calls them with ``create=False``: it changes nothing and says what ``run`` would create.
"""

from __future__ import annotations

__all__ = ["check_database", "check_metrics_address", "require_token"]

import asyncio
import os
import pathlib
import socket
import typing

import sqlalchemy
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import create_async_engine

from reconciler.config import ConfigError
from reconciler.discord.token import token_shape_problem
from reconciler.failures import FailureKind, StartupError
from reconciler.store.connect import create_engine

if typing.TYPE_CHECKING:
    from reconciler.config import Settings


def require_token(settings: Settings, source: str) -> None:
    """``run`` cannot start without a token hikari accepts; say where to put it, never what it is."""
    token = settings.discord.token.get_secret_value()
    if not token.strip():
        raise ConfigError(
            f"{source}: discord.token: required to connect to Discord "
            "(set it in the file or in RECONCILER_DISCORD__TOKEN)"
        )
    problem = token_shape_problem(token)
    if problem is not None:
        where = "RECONCILER_DISCORD__TOKEN" if "RECONCILER_DISCORD__TOKEN" in os.environ else source
        raise ConfigError(f"{where}: discord.token: {problem}; copy it from the developer portal (Bot, Reset Token)")


def _database_failure(shown: str, reason: str) -> StartupError:
    return StartupError(FailureKind.DATABASE, f"database.url: {shown}: {reason}")


def _nearest_existing(path: pathlib.Path) -> pathlib.Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_sqlite_file(database: pathlib.Path, shown: str, *, create: bool) -> list[str]:
    """What ``run`` needs of the SQLite file: a folder it can write in, and a file it can write if present.

    Without ``create`` nothing is made or opened for writing: an existing file has its header read, a
    missing one only has its nearest existing folder looked at.
    """
    path = database.expanduser().resolve()
    folder = path.parent
    notes: list[str] = []
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise _database_failure(shown, f"cannot create the folder {folder}: {existing} is not a folder")
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _database_failure(shown, f"cannot create the folder {folder}: {exc.strerror}") from None
    elif not folder.is_dir():
        if not _writable(existing):
            raise _database_failure(shown, f"cannot create the folder {folder}: {existing} is not writable")
        notes.append(f"run would create the folder {folder}")
    if path.exists():
        if not path.is_file():
            raise _database_failure(shown, f"{path} is not a file")
        if not (_writable(path) and _writable(folder)):
            raise _database_failure(shown, f"{path} or its folder is not writable (SQLite writes a journal beside it)")
        _read_sqlite(path, shown)
        notes.append(f"database file {path} exists and is writable")
    elif folder.is_dir() and not _writable(folder):
        raise _database_failure(shown, f"cannot create {path}: {folder} is not writable")
    elif not create:
        notes.append(f"run would create the database file {path} and its tables")
    return notes


def _writable(path: pathlib.Path) -> bool:
    # os.access answers for the real user; a read-only mount is refused even to root.
    return os.access(path, os.W_OK) and not os.statvfs(path).f_flag & os.ST_RDONLY


_SQLITE_HEADER: typing.Final = b"SQLite format 3\x00"


def _read_sqlite(path: pathlib.Path, shown: str) -> None:
    # The file's header, not a connection: even a read-only connection to a WAL database leaves -wal and
    # -shm files beside it, and check-config must leave nothing behind. An empty file is an empty database.
    try:
        with path.open("rb") as file:
            header = file.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise _database_failure(shown, f"cannot read {path}: {exc.strerror}") from None
    if header and header != _SQLITE_HEADER:
        raise _database_failure(shown, f"{path} is not a SQLite database")


async def check_database(settings: Settings, *, create: bool = True) -> list[str]:
    """Make sure ``run`` can use the database; return notes for ``check-config`` to print.

    With ``create`` (``run``, ``db upgrade``) the SQLite folder is created and a connection opened, which
    creates the file. Without it (``check-config``) SQLite is only looked at, and PostgreSQL is connected
    to and asked whether it accepts writes. Failures are :class:`StartupError` (exit code 6) naming the
    URL without its password.
    """
    url = sqlalchemy.make_url(settings.database.url)
    shown = url.render_as_string(hide_password=True)
    notes: list[str] = []
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            return ["in-memory SQLite database: nothing is kept after the process stops"]
        notes = _check_sqlite_file(pathlib.Path(url.database), shown, create=create)
        if not create:
            return notes
    timeout = settings.database.connect_timeout_seconds
    # On PostgreSQL the store's own engine: it turns libpq's `options=-c...` (a schema of one's own), which
    # asyncpg does not take as an argument, into server settings. The check must accept what the store accepts.
    engine = create_engine(url, pool_size=1) if url.get_backend_name() == "postgresql" else create_async_engine(url)
    try:
        async with asyncio.timeout(timeout + 1):
            async with engine.connect() as conn:
                await conn.execute(sqlalchemy.text("SELECT 1"))
                if url.get_backend_name() == "postgresql":
                    read_only = await conn.scalar(sqlalchemy.text("SELECT current_setting('transaction_read_only')"))
                    if read_only == "on":
                        raise _database_failure(shown, "the server accepts no writes (a read-only replica?)")
                    notes.append(f"connected to {shown}; it accepts writes")
    except (OSError, TimeoutError, sqlalchemy.exc.SQLAlchemyError) as exc:
        cause: BaseException = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig else exc
        reason = (str(cause).splitlines() or [""])[0] or type(cause).__name__
        if isinstance(cause, TimeoutError):
            reason = f"no answer within {timeout:g} s (database.connect_timeout_seconds)"
        raise _database_failure(
            shown, f"cannot connect: {reason}: check that the server runs and that the URL, user and database are right"
        ) from None
    finally:
        await engine.dispose()
    return notes


def check_metrics_address(settings: Settings) -> str:
    """Whether ``run`` could listen on ``observability.metrics_address`` now (binds and closes at once)."""
    obs = settings.observability
    if obs.metrics_port == 0:
        return f"{obs.metrics_address}: a free port is picked at start-up"
    family = socket.AF_INET6 if ":" in obs.metrics_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((obs.metrics_host, obs.metrics_port))
        except OSError as exc:
            raise StartupError(
                FailureKind.METRICS_ADDRESS,
                f"observability.metrics_address: cannot listen on {obs.metrics_address}: {exc.strerror}: "
                "stop what listens there (another reconciler?) or pick another HOST:PORT",
            ) from None
    return f"{obs.metrics_address} is free"
