"""`reconciler sandbox`: run the Discord emulator as its own process, driven over `/_sandbox/` HTTP."""

from __future__ import annotations

__all__ = ["add_subcommand", "main", "run", "serve"]

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import typing

from reconciler.sandbox.sandbox import DiscordSandbox
from reconciler.sandbox.settings import SandboxSettings

_LOGGER: typing.Final = logging.getLogger(__name__)


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--guilds", type=int, default=1, help="synthetic guilds to create (default: %(default)s)")
    parser.add_argument(
        "--members", type=int, default=1000, help="members per guild, bot included (default: %(default)s)"
    )
    parser.add_argument(
        "--roles", type=int, default=12, help="roles per guild, @everyone included (default: %(default)s)"
    )
    parser.add_argument("--channels", type=int, default=3, help="text channels per guild (default: %(default)s)")
    parser.add_argument(
        "--seed", type=int, default=1, help="seed of the first guild; the next get seed+1... (default: %(default)s)"
    )
    parser.add_argument(
        "--shards", type=int, default=1, help="shard count GET /gateway/bot recommends; guilds spread over shards"
    )
    parser.add_argument(
        "--no-members-intent",
        action="store_true",
        help="the application lacks the GUILD_MEMBERS privileged intent (IDENTIFY asking for it gets 4014)",
    )
    parser.add_argument("--heartbeat-interval-ms", type=int, default=41_250, help="HELLO heartbeat interval")
    parser.add_argument("--log-level", default="WARNING", help="log level on stderr (default: %(default)s)")


def add_subcommand(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:  # pyright: ignore[reportPrivateUsage]
    """Register `sandbox` on the `reconciler` command line; its handler is `args.func(args) -> int`."""
    parser = subparsers.add_parser(
        "sandbox",
        help="run a Discord emulator (gateway + REST) the bot can connect to",
        description=(
            "Serve Discord's gateway and REST API with synthetic guilds. Prints one JSON line "
            "(rest_url, token, application_id, guild_ids, ...) on stdout, then serves until SIGINT/SIGTERM. "
            "Scenario control: HTTP under <rest_url>/_sandbox/."
        ),
    )
    _add_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of `reconciler sandbox`: serve until interrupted; 0 on a clean stop."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=str(args.log_level).upper(), stream=sys.stderr)
    return asyncio.run(
        serve(
            host=args.host,
            port=args.port,
            guilds=args.guilds,
            members=args.members,
            roles=args.roles,
            channels=args.channels,
            seed=args.seed,
            shards=args.shards,
            members_intent_enabled=not args.no_members_intent,
            heartbeat_interval_ms=args.heartbeat_interval_ms,
        )
    )


async def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    guilds: int = 1,
    members: int = 1000,
    roles: int = 12,
    channels: int = 3,
    seed: int = 1,
    shards: int = 1,
    members_intent_enabled: bool = True,
    heartbeat_interval_ms: int = 41_250,
    stop: asyncio.Event | None = None,
) -> int:
    """Start a sandbox, print its JSON line, and serve until SIGINT/SIGTERM (or `stop` is set)."""
    settings = SandboxSettings(
        heartbeat_interval_ms=heartbeat_interval_ms,
        members_intent_enabled=members_intent_enabled,
        recommended_shards=shards,
    )
    sandbox = DiscordSandbox(host, port, settings=settings)
    await sandbox.start()
    try:
        guild_ids = [
            sandbox.create_guild(
                members=members,
                roles=roles,
                channels=channels,
                seed=seed + index,
                shard=(index % shards, shards) if shards > 1 else None,
            )
            for index in range(guilds)
        ]
        line = {
            "rest_url": sandbox.rest_url,
            "gateway_url": sandbox.gateway_url,
            "scenario_url": f"{sandbox.base_url}/_sandbox",
            "token": sandbox.token,
            "application_id": str(sandbox.application_id),
            "bot_user_id": str(sandbox.bot_user_id),
            "guild_ids": [str(g) for g in guild_ids],
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await sandbox.stop()
    _LOGGER.info("sandbox stopped")
    return 0


def main(argv: typing.Sequence[str] | None = None) -> int:
    """`python -m reconciler.sandbox.standalone [options]`: the same as `reconciler sandbox`."""
    parser = argparse.ArgumentParser(prog="reconciler sandbox", description="Run the Discord sandbox.")
    _add_options(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
