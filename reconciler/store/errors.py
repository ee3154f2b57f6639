"""What an exception raised while reading or writing says: one member's bad data, the database out of
reach, or a bug. The three are handled apart: a row is skipped, an outage is waited out, a bug fails
the run and is retried a bounded number of times."""

from __future__ import annotations

__all__ = ["is_row_error", "is_unreachable", "row_error_reason"]

import sqlite3
import typing

import asyncpg
import asyncpg.exceptions
import sqlalchemy.exc

if typing.TYPE_CHECKING:
    from collections.abc import Iterator

# Errors about one member's data: the row is skipped, counted and sampled, the run goes on. Only what the
# database (or its driver) refuses in a value: a constraint, a number out of the column's range, text it
# cannot store (a lone surrogate; a NUL on PostgreSQL). A programming error (a wrong number of bindings,
# a TypeError, sqlite3.ProgrammingError, a driver InterfaceError) is not bad data: it fails the run.
_ROW_ERRORS: typing.Final[tuple[type[BaseException], ...]] = (
    OverflowError,
    UnicodeError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    sqlalchemy.exc.IntegrityError,
    sqlalchemy.exc.DataError,
)
# Never per-member, even with a row error in their chain: the database itself or the code is at fault
# (the run fails, counts as a store error and is retried with back-off).
_FATAL_ERRORS: typing.Final[tuple[type[BaseException], ...]] = (
    sqlite3.OperationalError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
    sqlalchemy.exc.ProgrammingError,
    sqlalchemy.exc.InterfaceError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    sqlalchemy.exc.OperationalError,
    ConnectionError,
    TimeoutError,
)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)


def is_row_error(exc: BaseException) -> bool:
    """True when `exc` is about the values of the rows written, not about the database or the code.

    The outermost error that says what happened decides (SQLAlchemy's wrappers are looked through): a
    `TypeError` raised while handling a constraint violation is a bug, not bad data.
    """
    for cause in _causes(exc):
        if isinstance(cause, _FATAL_ERRORS):
            return False
        if isinstance(cause, _ROW_ERRORS):
            return True
        if not isinstance(cause, sqlalchemy.exc.StatementError):
            return False
    return False


def row_error_reason(exc: BaseException) -> str:
    cause = next((c for c in _causes(exc) if isinstance(c, _ROW_ERRORS)), exc)
    text = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {text}"[:200]


# The database out of reach or too busy to answer: refused, cut, shut down, out of connections, locked by
# another writer. Nothing in the run's rows or code caused it, so the work is retried for as long as it lasts.
_UNREACHABLE_ERRORS: typing.Final[tuple[type[BaseException], ...]] = (
    OSError,  # refused, reset, no route to the host, timed out
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection came free in time
)
_SQLITE_BUSY: typing.Final = ("database is locked", "database table is locked", "unable to open database file")


def is_unreachable(exc: BaseException) -> bool:
    """True when `exc` says the database could not be reached or was too busy, not what was asked of it.

    As for row errors, the outermost error that says what happened decides: SQLAlchemy's wrappers are
    looked through (a connection SQLAlchemy found dead is unreachable), anything else stops the search.
    """
    for cause in _causes(exc):
        if isinstance(cause, sqlalchemy.exc.DBAPIError) and cause.connection_invalidated:
            return True
        if isinstance(cause, _UNREACHABLE_ERRORS):
            return True
        if isinstance(cause, sqlite3.OperationalError):
            return str(cause).startswith(_SQLITE_BUSY)
        if not type(cause).__module__.startswith("sqlalchemy."):
            return False
    return False
