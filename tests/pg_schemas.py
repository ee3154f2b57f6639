"""PostgreSQL databases for tests outside tests/store: a schema of their own, dropped afterwards."""

from __future__ import annotations

__all__ = ["postgres_schema_url", "require_postgres"]

import contextlib
import os
import socket
import typing
import uuid

import asyncpg
import pytest

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterator

HOST: typing.Final = "127.0.0.1"
PORT: typing.Final = 5432
DSN: typing.Final = f"postgresql://postgres@{HOST}:{PORT}/test"


def require_postgres() -> None:
    """Skip when the server is not listening; fail instead under CI=true (PostgreSQL tests must run)."""
    try:
        with socket.create_connection((HOST, PORT), timeout=2):
            return
    except OSError:
        reason = f"PostgreSQL is not reachable at {HOST}:{PORT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
    pytest.skip(reason)


@contextlib.asynccontextmanager
async def postgres_schema_url() -> AsyncIterator[str]:
    """An async SQLAlchemy URL whose search_path is a new, empty schema."""
    require_postgres()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(DSN)
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await connection.close()
    try:
        yield f"postgresql+asyncpg://postgres@{HOST}:{PORT}/test?options=-csearch_path%3D{schema}"
    finally:
        await _drop_schema(schema)


async def _drop_schema(schema: str) -> None:
    """DROP SCHEMA, again if PostgreSQL picked it as a deadlock victim: a reader of the test (a view's
    pool, a bot process) may still be finishing a query on the schema's tables as the test ends, and
    the drop, which locks every table of the schema, can then meet it in the other order."""
    for attempt in range(3):
        connection = await asyncpg.connect(DSN)
        try:
            await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        except asyncpg.exceptions.DeadlockDetectedError:
            if attempt == 2:
                raise
        else:
            return
        finally:
            await connection.close()
