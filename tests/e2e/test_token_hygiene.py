"""The bot token never appears in a log line, an error, a metric or a sync_runs row."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest
from app_settings import app_settings
from waiting import eventually

from reconciler.app import running_app
from reconciler.observability.logging import StructuredFormatter, configure_logging
from reconciler.sandbox import DiscordSandbox


class _Everything(logging.Handler):
    """Keeps every formatted record, unredacted: the test must see what the code itself emits."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(StructuredFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


@pytest.mark.asyncio
async def test_token_absent_from_logs_metrics_and_runs(sandbox: DiscordSandbox, app_factory, db_view_factory) -> None:
    token = sandbox.token
    secret_part = token.split(".")[-1]
    everything = _Everything()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(everything)
    root.setLevel(logging.DEBUG)
    # aiosqlite narrates every cursor call at DEBUG (no token there, only a crawl); hikari stays at DEBUG.
    quiet = logging.getLogger("aiosqlite")
    quiet_level = quiet.level
    quiet.setLevel(logging.INFO)
    try:
        guild_id = sandbox.create_guild(members=300, seed=31)
        app = await app_factory(sandbox)
        await sandbox.add_member(guild_id, username="joiner")
        channel = next(iter(sandbox.channels(guild_id)))
        await sandbox.post_message(channel, sandbox.admin_user_id(guild_id), "hello")
        await eventually(lambda: asyncio.sleep(0, sandbox.commands()), bool, within=10)
        iid = await sandbox.invoke_command(guild_id, sandbox.admin_user_id(guild_id), ["sync", "users"])
        responses = await sandbox.wait_for_responses(iid, count=2, timeout=20)
        assert responses[-1]["body"]["embeds"][0]["title"] == "Sync users: success"
        await sandbox.disconnect(resumable=False)
        assert await app.wait_ready(30)
        exposition = app.metrics.exposition().decode()
        view = db_view_factory(app.settings.database.url)
        rows = [str(r) for table in ("sync_runs", "guilds") for r in await view.rows(f"SELECT * FROM {table}")]
    finally:
        root.removeHandler(everything)
        root.setLevel(previous_level)
        quiet.setLevel(quiet_level)

    assert len(everything.lines) > 50, "the run logged almost nothing: the capture is broken"
    for text in (*everything.lines, exposition, *rows, repr(app.settings)):
        assert token not in text
        assert secret_part not in text


@pytest.mark.asyncio
async def test_rejected_token_error_does_not_echo_it(sandbox: DiscordSandbox, tmp_path) -> None:
    wrong = sandbox.token[:-6] + "abcdef"
    settings = app_settings(sandbox, f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", discord={"token": wrong})
    stream = io.StringIO()
    configure_logging(level="DEBUG", stream=stream)
    with pytest.raises(Exception) as caught:  # noqa: PT011 - whatever hikari raises, it must not echo the token
        async with running_app(settings):
            pass
    assert wrong not in str(caught.value)
    assert wrong not in repr(caught.value)
    assert wrong not in stream.getvalue()


def test_configured_handler_redacts_secrets_from_any_logger() -> None:
    stream = io.StringIO()
    handler = configure_logging(level="INFO", stream=stream, secrets=["Tk.secret.value-123456"])
    try:
        logging.getLogger("third.party").warning("header Authorization: Bot Tk.secret.value-123456")
        try:
            raise RuntimeError("failed with Tk.secret.value-123456")
        except RuntimeError:
            logging.getLogger("reconciler.x").exception("boom", extra={"guild_id": 1})
    finally:
        logging.getLogger().removeHandler(handler)
    output = stream.getvalue()
    assert "Tk.secret.value-123456" not in output
    assert output.count("[REDACTED]") >= 3
    assert len(output.strip().splitlines()) == 2, "one line per event, tracebacks included"
