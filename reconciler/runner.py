"""``reconciler run``: the bot in production, until SIGINT or SIGTERM stops it in order."""

from __future__ import annotations

__all__ = ["add_subcommand", "serve_until_signalled"]

import asyncio
import contextlib
import logging
import pathlib
import signal
import typing

from reconciler.app import running_app
from reconciler.config import load_settings, resolve_config_path
from reconciler.failures import FailureKind, StartupError
from reconciler.heap import limit_arenas
from reconciler.observability.logging import configure_logging
from reconciler.preflight import check_database, require_token

if typing.TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Coroutine

    from reconciler.app import App
    from reconciler.config import Settings

_LOGGER: typing.Final = logging.getLogger(__name__)

# Stop in order within this many seconds of a signal; a second signal stops at once.
SHUTDOWN_SECONDS: typing.Final = 10.0


async def serve_until_signalled(
    settings: Settings,
    *,
    rest_url: str | None = None,
    while_running: Callable[[App, asyncio.Event], Coroutine[typing.Any, typing.Any, None]] | None = None,
) -> int:
    """Run the app until SIGINT/SIGTERM (or ``while_running`` returns); 0 on a clean stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with running_app(settings, rest_url=rest_url) as app:
            _LOGGER.info("running", extra={"shards": sorted(app.bot.shards)})
            if while_running is None:
                await stop.wait()
            else:
                task: asyncio.Task[None] = asyncio.create_task(while_running(app, stop))
                stopper: asyncio.Task[typing.Any] = asyncio.create_task(stop.wait())
                await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            _LOGGER.info("stop requested")
            # A second signal while draining stops at once.
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, _hard_exit)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


def _hard_exit() -> None:
    raise SystemExit(130)


def _run(args: argparse.Namespace) -> int:
    named = pathlib.Path(args.config) if args.config else None
    path, _ = resolve_config_path(named)
    settings = load_settings(named)
    require_token(settings, str(path))
    obs = settings.observability
    token = settings.discord.token.get_secret_value()
    configure_logging(level=obs.log_level, fmt=obs.log_format, secrets=[token])
    limit_arenas()  # before the database check starts the first driver thread
    try:
        asyncio.run(check_database(settings))
        return asyncio.run(serve_until_signalled(settings))
    except StartupError:
        raise  # the command line logs it with its cause at DEBUG and prints its line
    except Exception as exc:
        # Not a cause we know: still one line (the token never in it), the traceback in the log at DEBUG.
        _LOGGER.debug("stopped by an unexpected error", exc_info=True)
        reason = ((str(exc).splitlines() or [""])[0] or "no message").replace(token, "[token]")
        raise StartupError(
            FailureKind.UNEXPECTED,
            f"unexpected {type(exc).__name__}: {reason} (the traceback is logged at DEBUG: "
            "RECONCILER_OBSERVABILITY__LOG_LEVEL=DEBUG)",
        ) from None


def add_subcommand(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:  # pyright: ignore[reportPrivateUsage]
    parser = subparsers.add_parser("run", help="run the bot against Discord (or discord.rest_url) until stopped")
    parser.set_defaults(func=_run)
