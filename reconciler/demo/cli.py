"""``reconciler demo``: the real bot against an in-process Discord sandbox, for anyone without a token or server."""

from __future__ import annotations

__all__ = ["add_subcommand"]

import argparse
import asyncio
import logging
import typing

import pydantic

from reconciler.config import ConfigError, DatabaseSettings, ObservabilitySettings
from reconciler.demo.environment import DEFAULT_DATABASE_URL, DEFAULT_METRICS_ADDRESS, DemoOptions

_LOGGER: typing.Final = logging.getLogger(__name__)

MIN_MEMBERS: typing.Final = 10
MAX_MEMBERS: typing.Final = 1_000_000


def _members(text: str) -> int:
    value = int(text)
    if not MIN_MEMBERS <= value <= MAX_MEMBERS:
        msg = f"must be between {MIN_MEMBERS:,} and {MAX_MEMBERS:,}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        msg = "must be more than 0"
        raise argparse.ArgumentTypeError(msg)
    return value


def _check(model: type[pydantic.BaseModel], option: str, **values: str) -> None:
    try:
        model(**values)
    except pydantic.ValidationError as exc:
        reason = str(exc.errors(include_url=False)[0]["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{option}: {reason}") from None


def _run(args: argparse.Namespace) -> int:
    _check(DatabaseSettings, "--database", url=args.database)
    _check(ObservabilitySettings, "--metrics-address", metrics_address=args.metrics_address)
    options = DemoOptions(
        members=args.members,
        duration=args.duration,
        database_url=args.database,
        metrics_address=args.metrics_address,
        seed=args.seed,
    )
    # Imported here: the bot, the sandbox and the scheduler load only when a demo runs.
    from reconciler.demo.run import run_demo  # noqa: PLC0415
    from reconciler.demo.terminal import Terminal  # noqa: PLC0415

    return asyncio.run(run_demo(options, Terminal()))


def add_subcommand(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:  # pyright: ignore[reportPrivateUsage]
    """Register `demo` on the `reconciler` command line."""
    parser = subparsers.add_parser(
        "demo",
        help="watch the bot keep a database equal to a simulated Discord server (no token needed)",
        description=(
            "Start a Discord sandbox in this process with a synthetic server, run the real bot against it "
            "(the same code as `reconciler run`, only the REST URL differs) with a fresh SQLite database, "
            "and play a scenario: start-up sync, live traffic, tampering repaired by the drift check, lost "
            "events repaired by the relist, /sync as an admin. Ends with a summary; exit code 0 only if the "
            "database equals the server (coverage 100%, drift 0)."
        ),
    )
    parser.add_argument(
        "--members",
        type=_members,
        default=5_000,
        metavar="N",
        help="members of the simulated server (default: %(default)s)",
    )
    parser.add_argument(
        "--duration", type=_seconds, default=60.0, metavar="S", help="seconds to run (default: %(default)s)"
    )
    parser.add_argument(
        "--database",
        default=DEFAULT_DATABASE_URL,
        metavar="URL",
        help="database URL; a SQLite file is deleted first so every demo starts fresh (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-address",
        default=DEFAULT_METRICS_ADDRESS,
        metavar="HOST:PORT",
        help="where /metrics is served; a free port is picked if this one is taken, 0 always picks one "
        "(default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the server and its traffic (default: %(default)s)")
    parser.set_defaults(func=_run)
