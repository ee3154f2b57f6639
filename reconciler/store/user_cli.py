"""`reconciler user export|forget USER_ID`: one person's data, printed as JSON or erased on request."""

from __future__ import annotations

__all__ = ["EXIT_BAD_INPUT", "EXIT_DATABASE", "add_subcommand", "parse_snowflake"]

import asyncio
import json
import logging
import sys
import typing

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from reconciler.store.cli import database_url
from reconciler.store.sql_store import SqlStore

if typing.TYPE_CHECKING:
    import argparse

_LOGGER: typing.Final = logging.getLogger(__name__)

EXIT_BAD_INPUT: typing.Final = 2
EXIT_DATABASE: typing.Final = 1
_SNOWFLAKE_MAX: typing.Final = 2**63 - 1


def parse_snowflake(text: str) -> int | None:
    """A Discord id written in decimal (what Discord shows with developer mode), or None if it is not one."""
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if 0 < value <= _SNOWFLAKE_MAX else None


def add_subcommand(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:  # pyright: ignore[reportPrivateUsage]
    """Register `user export` and `user forget`."""
    user = subparsers.add_parser("user", help="one user's data: export it or erase it on request")
    actions = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    for name, handler, text in (
        ("export", _export, "print as JSON everything stored about the user, history included"),
        ("forget", _forget, "erase the user's names, nicknames, avatars and history values in every guild"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("user_id", metavar="USER_ID", help="the user's Discord id")
        action.add_argument("--database", metavar="URL", help="database URL (default: database.url from the settings)")
        action.set_defaults(func=handler)


def _fail(text: str) -> int:
    print(text, file=sys.stderr)
    return EXIT_BAD_INPUT


class _DatabaseError(Exception):
    """The database could not be read or written (reported in one line, nothing half-done)."""


async def _with_store(url: str, work: typing.Callable[[SqlStore], typing.Awaitable[typing.Any]]) -> typing.Any:
    store = await SqlStore.open(url, pool_size=1)
    try:
        return await work(store)
    except (OSError, sa_exc.SQLAlchemyError) as exc:
        cause: BaseException = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig else exc
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        shown = sa.make_url(url).render_as_string(hide_password=True)
        raise _DatabaseError(f"{shown}: {reason}") from None
    finally:
        await store.close()


def _run(action: str, url: str, work: typing.Callable[[SqlStore], typing.Awaitable[typing.Any]]) -> typing.Any:
    try:
        return asyncio.run(_with_store(url, work))
    except _DatabaseError as exc:
        print(f"user {action}: database error, nothing was changed: {exc}", file=sys.stderr)
        return _FAILED


_FAILED: typing.Final = object()


def _export(args: argparse.Namespace) -> int:
    user_id = parse_snowflake(args.user_id)
    if user_id is None:
        return _fail(f"user export: {args.user_id!r} is not a Discord user id (a positive decimal snowflake)")
    found = _run("export", database_url(args), lambda store: store.export_user(user_id))
    if found is _FAILED:
        return EXIT_DATABASE
    if found is None:
        return _fail(f"user export: unknown user {user_id}: no table holds anything about this id")
    print(json.dumps({"user_id": user_id, "tables": found}, indent=2, sort_keys=True, ensure_ascii=False))
    return 0


def _forget(args: argparse.Namespace) -> int:
    user_id = parse_snowflake(args.user_id)
    if user_id is None:
        return _fail(f"user forget: {args.user_id!r} is not a Discord user id (a positive decimal snowflake)")
    kept = _run("forget", database_url(args), lambda store: store.forget_user(user_id))
    if kept is _FAILED:
        return EXIT_DATABASE
    if kept is None:
        return _fail(f"user forget: unknown user {user_id}: no table holds anything about this id")
    print(f"user {user_id} forgotten: personal values erased; {kept} membership(s) kept as id-only rows")
    return 0
