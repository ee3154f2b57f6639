"""Which write errors are one member's bad data (isolated, counted) and which fail the run."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest
import sqlalchemy.exc

from reconciler.store.sql_store import is_row_error


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
