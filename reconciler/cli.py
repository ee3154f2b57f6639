"""``reconciler`` command line: one entry point, one subcommand per job, exit code 2 for bad config."""

from __future__ import annotations

__all__ = ["main"]

import argparse
import asyncio
import pathlib
import sys
import typing

from reconciler.config import ConfigError, Settings, load_settings
from reconciler.preflight import check_database, require_token

if typing.TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_CONFIG: typing.Final = 2

Handler = typing.Callable[[argparse.Namespace], int]


def _config_source(args: argparse.Namespace) -> str:
    return str(args.config or "config.toml")


def _load(args: argparse.Namespace) -> Settings:
    return load_settings(pathlib.Path(args.config) if args.config else None)


def _check_config(args: argparse.Namespace) -> int:
    settings = _load(args)
    source = _config_source(args)
    require_token(settings, source)
    asyncio.run(check_database(settings, source))
    print(f"{source}: ok")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="Keep a SQL database in sync with Discord guild members, roles and activity.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="settings file (default: $RECONCILER_CONFIG or ./config.toml); RECONCILER_* variables override it",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = sub.add_parser("check-config", help="validate the settings, the token and the database connection")
    check.set_defaults(func=_check_config)

    for module in _SUBCOMMAND_MODULES:
        module.add_subcommand(sub)
    return parser


class _SubcommandModule(typing.Protocol):
    def add_subcommand(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...  # pyright: ignore[reportPrivateUsage]


def _subcommand_modules() -> list[_SubcommandModule]:
    # Each part registers its own subcommand. Imported here, not at the top, so that `--help` and
    # `check-config` stay fast and a broken optional part cannot stop them.
    from reconciler import runner  # noqa: PLC0415
    from reconciler.demo import cli as demo_cli  # noqa: PLC0415
    from reconciler.store import cli as store_cli  # noqa: PLC0415
    from reconciler.store import user_cli  # noqa: PLC0415

    modules: list[_SubcommandModule] = [runner, store_cli, user_cli, demo_cli]
    try:
        from reconciler.sandbox import standalone  # noqa: PLC0415
    except ImportError:
        pass
    else:
        modules.append(standalone)
    return modules


_SUBCOMMAND_MODULES: typing.Final = _subcommand_modules()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    handler = typing.cast("Handler", args.func)
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
