"""``reconciler`` command line: one entry point, one subcommand per job, one line and an exit code per failure.

Exit codes (the README's troubleshooting table): 0 ok, 1 unexpected, 2 configuration, 3 Discord refused
(token, privileged intent), 4 Discord unreachable, 5 metrics address unusable, 6 database, 130 interrupted.
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import asyncio
import logging
import os
import pathlib
import sys
import typing

from reconciler.config import ConfigError, load_settings, resolve_config_path
from reconciler.failures import FailureKind, StartupError
from reconciler.preflight import check_database, check_metrics_address, require_token

if typing.TYPE_CHECKING:
    from collections.abc import Sequence

_LOGGER: typing.Final = logging.getLogger(__name__)

EXIT_CONFIG: typing.Final = int(FailureKind.CONFIG)

Handler = typing.Callable[[argparse.Namespace], int]

# The subcommands that read the settings file; the demo and the sandbox build their own settings.
_READS_SETTINGS: typing.Final = ("check-config", "run", "db")

_CONFIG_HELP: typing.Final = (
    "settings file (default: $RECONCILER_CONFIG or ./config.toml); RECONCILER_* variables override it"
)


def _check_config(args: argparse.Namespace) -> int:
    named = pathlib.Path(args.config) if args.config else None
    path, _ = resolve_config_path(named)
    settings = load_settings(named)
    source = str(path)
    require_token(settings, source)
    print(f"{source}: {'read' if path.is_file() else 'absent: defaults and RECONCILER_* variables only'}")
    for note in asyncio.run(check_database(settings, create=False)):
        print(f"database: {note}")
    print(f"metrics: {check_metrics_address(settings)}")
    if args.online:
        from reconciler.discord.online_check import ask_discord  # noqa: PLC0415 - hikari's REST client, only now

        report = asyncio.run(ask_discord(settings.discord))
        for line in report.lines():
            print(line)
        failure = report.failure()
        if failure is not None:
            sys.stdout.flush()
            raise failure
    else:
        print("discord: token has a bot token's shape; not checked with Discord (add --online)")
    print(f"{source}: ok")
    return 0


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config`` on every subcommand too: people type ``reconciler check-config --config x.toml``.

    SUPPRESS as the default keeps a subcommand that was not given it from erasing the top-level value.
    """
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=_CONFIG_HELP)
    for action in parser._actions:  # pyright: ignore[reportPrivateUsage]
        if isinstance(action, argparse._SubParsersAction):  # pyright: ignore[reportPrivateUsage]
            children = typing.cast("dict[str, argparse.ArgumentParser]", action.choices)  # pyright: ignore[reportUnknownMemberType]
            for child in children.values():
                _add_config_option(child)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="Keep a SQL database in sync with Discord guild members, roles and activity.",
        epilog="Exit codes: 0 ok, 1 unexpected, 2 configuration, 3 Discord refused (token, intent), "
        "4 Discord unreachable, 5 metrics address unusable, 6 database, 130 interrupted.",
    )
    parser.add_argument("--config", metavar="PATH", help=_CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = sub.add_parser(
        "check-config",
        help="validate the settings, the token's shape, the database and the metrics address; changes nothing",
        description="Validate everything `run` needs without changing anything: it creates no file and no "
        "folder and says what `run` would create. --online also asks Discord.",
    )
    check.add_argument(
        "--online",
        action="store_true",
        help="also ask Discord: GET /users/@me, /oauth2/applications/@me (Server Members Intent) and /gateway/bot",
    )
    check.set_defaults(func=_check_config)

    for module in _SUBCOMMAND_MODULES:
        module.add_subcommand(sub)
    for name in _READS_SETTINGS:
        _add_config_option(sub.choices[name])
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
    except StartupError as exc:
        _LOGGER.debug("failed", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `reconciler check-config | head`: the reader left. Quietly, as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        # No known cause (those are StartupError): still one line, never the token, the traceback at DEBUG.
        _LOGGER.debug("failed", exc_info=True)
        reason = (str(exc).splitlines() or [""])[0] or "no message"
        token = os.environ.get("RECONCILER_DISCORD__TOKEN", "")
        if token:
            reason = reason.replace(token, "[token]")
        print(
            f"error: unexpected {type(exc).__name__}: {reason} "
            "(the traceback is logged at DEBUG: RECONCILER_OBSERVABILITY__LOG_LEVEL=DEBUG)",
            file=sys.stderr,
        )
        return int(FailureKind.UNEXPECTED)


if __name__ == "__main__":
    sys.exit(main())
