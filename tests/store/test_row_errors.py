"""Which write errors are one member's bad data (isolated, counted), which say the database is out of reach
(waited out), and which fail the run."""

from __future__ import annotations

import pathlib
import sqlite3

import asyncpg
import pytest
import sqlalchemy.exc

from reconciler.store.errors import is_row_error, is_unreachable


def _raised_while_handling(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 - the implicit __context__ is the point
    except BaseException as caught:
        return caught


def _wrapped(wrapper: type[sqlalchemy.exc.DBAPIError], orig: BaseException) -> BaseException:
    return wrapper("INSERT INTO members ...", {}, orig)  # pyright: ignore[reportArgumentType]


ROW_ERRORS = [
    pytest.param(sqlite3.IntegrityError("UNIQUE constraint failed: members.user_id"), id="sqlite constraint"),
    pytest.param(OverflowError("Python int too large to convert to SQLite INTEGER"), id="id out of range"),
    pytest.param(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), id="lone surrogate"),
    pytest.param(
        asyncpg.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00'), id="NUL on pg"
    ),
    pytest.param(asyncpg.UniqueViolationError("duplicate key"), id="pg constraint"),
    pytest.param(asyncpg.DataError("invalid input for query argument $1"), id="pg data"),
    pytest.param(_wrapped(sqlalchemy.exc.IntegrityError, sqlite3.IntegrityError("NOT NULL")), id="wrapped constraint"),
]

NOT_ROW_ERRORS = [
    pytest.param(
        sqlite3.ProgrammingError(
            "Incorrect number of bindings supplied. The current statement uses 9, and there are 8"
        ),
        id="wrong number of bindings",
    ),
    pytest.param(TypeError("write_members() takes 4 positional arguments but 5 were given"), id="TypeError"),
    pytest.param(ValueError("too many values to unpack"), id="ValueError"),
    pytest.param(KeyError("nickname"), id="KeyError"),
    pytest.param(sqlite3.InterfaceError("Error binding parameter 1"), id="sqlite interface"),
    pytest.param(
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"), id="pg interface"
    ),
    pytest.param(sqlite3.OperationalError("database is locked"), id="locked"),
    pytest.param(ConnectionResetError("connection reset"), id="connection lost"),
    pytest.param(
        _wrapped(sqlalchemy.exc.ProgrammingError, sqlite3.ProgrammingError("Incorrect number of bindings")),
        id="wrapped programming error",
    ),
    pytest.param(
        _raised_while_handling(TypeError("bug in the handler"), sqlite3.IntegrityError("UNIQUE")),
        id="bug raised while handling a constraint",
    ),
    pytest.param(
        _raised_while_handling(sqlite3.OperationalError("disk I/O error"), sqlite3.IntegrityError("UNIQUE")),
        id="rollback failed after a constraint",
    ),
]


@pytest.mark.parametrize("error", ROW_ERRORS)
def test_one_members_bad_data_is_a_row_error(error: BaseException) -> None:
    assert is_row_error(error)


@pytest.mark.parametrize("error", NOT_ROW_ERRORS)
def test_programming_and_database_errors_fail_the_run(error: BaseException) -> None:
    assert not is_row_error(error)


def _invalidated(orig: BaseException) -> BaseException:
    return sqlalchemy.exc.DBAPIError("SELECT ...", {}, orig, connection_invalidated=True)  # pyright: ignore[reportArgumentType]


UNREACHABLE = [
    pytest.param(ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"), id="refused"),
    pytest.param(ConnectionResetError("connection reset"), id="reset"),
    pytest.param(TimeoutError(), id="connect timed out"),
    pytest.param(OSError(113, "No route to host"), id="no route"),
    pytest.param(
        _invalidated(asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")),
        id="cut mid-query",
    ),
    pytest.param(asyncpg.CannotConnectNowError("the database system is starting up"), id="pg starting"),
    pytest.param(asyncpg.AdminShutdownError("terminating connection due to administrator command"), id="pg shutdown"),
    pytest.param(asyncpg.TooManyConnectionsError("sorry, too many clients already"), id="pg full"),
    pytest.param(
        _wrapped(sqlalchemy.exc.OperationalError, sqlite3.OperationalError("database is locked")), id="locked"
    ),
    pytest.param(sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"), id="pool exhausted"),
]

REACHABLE = [
    pytest.param(TypeError("write_members() takes 4 positional arguments but 5 were given"), id="TypeError"),
    pytest.param(sqlite3.IntegrityError("UNIQUE constraint failed: members.user_id"), id="constraint"),
    pytest.param(sqlite3.OperationalError("disk I/O error"), id="sqlite I/O error"),
    pytest.param(sqlite3.OperationalError("no such table: members"), id="no such table"),
    pytest.param(asyncpg.UndefinedTableError('relation "members" does not exist'), id="pg no such table"),
    pytest.param(
        _raised_while_handling(TypeError("bug in the handler"), ConnectionResetError("reset")),
        id="bug raised while handling a lost connection",
    ),
]


@pytest.mark.parametrize("error", UNREACHABLE)
def test_a_database_out_of_reach_is_unreachable_and_no_row_error(error: BaseException) -> None:
    assert is_unreachable(error)
    assert not is_row_error(error)


@pytest.mark.parametrize("error", REACHABLE)
def test_bugs_and_bad_data_are_not_an_outage(error: BaseException) -> None:
    assert not is_unreachable(error)


def test_a_real_locked_sqlite_database_is_unreachable(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    writer = sqlite3.connect(path, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError) as raised:
            writer.execute("INSERT INTO t VALUES (1)")
    finally:
        writer.close()
        holder.close()
    assert is_unreachable(raised.value)
