"""One demo from start to verdict: sandbox, fresh database, the production run path, the show, the summary."""

from __future__ import annotations

__all__ = ["SANDBOX_MEMBER_REQUEST_WINDOW", "run_demo"]

import asyncio
import contextlib
import logging
import random
import sys
import typing

from reconciler.demo.environment import (
    DRIFT_CHECK_SECONDS,
    demo_settings,
    describe_database,
    log_path,
    metrics_address,
    reset_database,
)
from reconciler.demo.replica import ReplicaView
from reconciler.demo.scenario import Show, collect_summary, play
from reconciler.demo.summary import render_summary
from reconciler.demo.traffic import Traffic
from reconciler.domain.wording import counted
from reconciler.observability.logging import RedactingHandler, StructuredFormatter, configure_logging
from reconciler.runner import serve_until_signalled
from reconciler.sandbox import DiscordSandbox

if typing.TYPE_CHECKING:
    import pathlib
    from collections.abc import Generator

    from reconciler.app import App
    from reconciler.demo.environment import DemoOptions
    from reconciler.demo.summary import DemoSummary
    from reconciler.demo.terminal import Terminal

_LOGGER: typing.Final = logging.getLogger(__name__)

SANDBOX_MEMBER_REQUEST_WINDOW: typing.Final = 2.0
"""Discord answers a second full member request within 30 s with RATE_LIMITED; the demo's sandbox
allows one every 2 s (scaled down like the drift check's interval), so a short demo can relist soon
after start-up."""
_ROLES: typing.Final = 12
_CHANNELS: typing.Final = 3
_GUILD_NAME: typing.Final = "Reconciler Demo"


@contextlib.contextmanager
def _logging_to(path: pathlib.Path, token: str) -> Generator[None]:
    """The bot's full log (INFO) to `path`; errors on stderr too, so problems stay visible.

    Not warnings: the show provokes them on purpose (drift found, a dropped connection) and narrates them;
    a raw log line in the middle of it would only interrupt.
    """
    with path.open("a", encoding="utf-8") as stream:
        file_handler = configure_logging(level="INFO", secrets=[token], stream=stream)
        console = RedactingHandler(sys.stderr, [token])
        console.setFormatter(StructuredFormatter())
        console.setLevel(logging.ERROR)
        # configure_logging replaces earlier handlers of this class; this one is added after it on purpose.
        logging.getLogger().addHandler(console)
        try:
            yield
        finally:
            for handler in (console, file_handler):
                logging.getLogger().removeHandler(handler)
                handler.flush()


async def run_demo(options: DemoOptions, terminal: Terminal) -> int:
    """Play the demo; 0 if at the end the database equals the server (coverage 100%, drift 0), else 1."""
    fresh = reset_database(options.database_url)
    database = describe_database(options.database_url)
    log_file = log_path(options.database_url)
    address, moved = metrics_address(options.metrics_address)
    sandbox = DiscordSandbox()
    sandbox.faults.member_request_window_s = SANDBOX_MEMBER_REQUEST_WINDOW
    results: list[DemoSummary] = []
    with _logging_to(log_file, sandbox.token):
        terminal.line("reconciler demo: the real bot against a Discord sandbox (no token, no server needed)")
        async with sandbox:
            guild_id = sandbox.create_guild(
                _GUILD_NAME, members=options.members, roles=_ROLES, channels=_CHANNELS, seed=options.seed
            )
            terminal.table(
                [
                    (
                        "server",
                        f'"{_GUILD_NAME}" ({guild_id}): {counted(sandbox.member_count(guild_id), "member")}, '
                        f"{counted(len(sandbox.roles(guild_id)), 'role')}, "
                        f"{counted(len(sandbox.channels(guild_id)), 'channel')}",
                    ),
                    ("sandbox", f"{sandbox.rest_url} (Discord's gateway and REST; only the bot's URL differs)"),
                    ("database", f"{database}" + (" (fresh)" if fresh else " (not reset: not a SQLite file)")),
                    ("bot log", f"{log_file} (errors on stderr too)"),
                    (
                        "schedule",
                        f"drift check every {DRIFT_CHECK_SECONDS:.0f} s (production: 15 min); "
                        "relist on demand (production: nightly)",
                    ),
                    (
                        "limits",
                        f"a full member list every {SANDBOX_MEMBER_REQUEST_WINDOW:.0f} s "
                        "(Discord: 30 s), so the relist fits in a short demo",
                    ),
                    ("ends", f"after {options.duration:.0f} s or on Ctrl-C, with a summary"),
                ],
                width=10,
            )
            settings = demo_settings(options, token=sandbox.token, rest_url=sandbox.rest_url, metrics=address)

            async def while_running(app: App, stop: asyncio.Event) -> None:
                del stop  # serve_until_signalled cancels this task on Ctrl-C; the summary still runs
                results.append(
                    await _show(app, sandbox, guild_id, options, terminal, database=database, log_file=str(log_file))
                )

            if moved:
                terminal.note(f"{options.metrics_address} is taken: the metrics server picks a free port")
            await serve_until_signalled(settings, rest_url=sandbox.rest_url, while_running=while_running)
    if not results:
        terminal.line("the demo stopped before it could check the database")
        return 1
    return results[0].exit_code


async def _show(
    app: App,
    sandbox: DiscordSandbox,
    guild_id: int,
    options: DemoOptions,
    terminal: Terminal,
    *,
    database: str,
    log_file: str,
) -> DemoSummary:
    metrics_url = app.metrics_server.url if app.metrics_server is not None else None
    if metrics_url:
        terminal.table([("metrics", f"{metrics_url}/metrics  ·  {metrics_url}/readyz")], width=10)
    rng = random.Random(options.seed)
    replica = ReplicaView(options.database_url)
    show = Show(
        app=app,
        sandbox=sandbox,
        guild_id=guild_id,
        terminal=terminal,
        replica=replica,
        traffic=Traffic(sandbox, guild_id, rng),
        rng=rng,
        duration=options.duration,
        metrics_url=metrics_url,
    )
    interrupted = False
    try:
        try:
            await play(show)
        except asyncio.CancelledError:
            # Ctrl-C (or SIGTERM): stop the show, keep the verdict.
            interrupted = True
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if sandbox.paused:
                await sandbox.resume()
            terminal.end_progress()
            terminal.line()
            terminal.note("interrupted: checking the database as it is now")
        summary = await collect_summary(show, interrupted=interrupted, database=database, log_file=log_file)
        render_summary(terminal, summary)
        return summary
    finally:
        await replica.close()
