"""`reconciler check-config --online` asks Discord (here the sandbox) what `run` would find out too late."""

from __future__ import annotations

import asyncio
import os
import pathlib
import sys
import typing

import pytest

if typing.TYPE_CHECKING:
    from sandbox_support import SandboxFactory

    from reconciler.sandbox import DiscordSandbox

pytestmark = pytest.mark.asyncio


async def _check_online(sandbox: DiscordSandbox, cwd: pathlib.Path, token: str | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env.update(
        {
            "RECONCILER_DISCORD__TOKEN": token or sandbox.token,
            "RECONCILER_DISCORD__REST_URL": sandbox.rest_url,
            "RECONCILER_OBSERVABILITY__METRICS_ADDRESS": "127.0.0.1:0",
        }
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reconciler",
        "check-config",
        "--online",
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_reports_the_bot_the_intent_and_the_session_starts(
    sandbox_factory: SandboxFactory, tmp_path: pathlib.Path
) -> None:
    sandbox = await sandbox_factory()
    code, out, err = await _check_online(sandbox, tmp_path)
    assert code == 0, err
    assert f"discord: token accepted: bot {sandbox.identity.user.username} (id {sandbox.bot_user_id})" in out
    assert "discord: Server Members Intent: on (GATEWAY_GUILD_MEMBERS_LIMITED)" in out
    assert "1,000 of 1,000 session starts left" in out
    assert out.splitlines()[-1] == "config.toml: ok"
    assert sandbox.stats.rest_requests["GET /users/@me"] == 1
    assert sandbox.stats.rest_requests["GET /oauth2/applications/@me"] == 1
    assert sandbox.stats.rest_requests["GET /gateway/bot"] == 1
    assert sandbox.stats.identifies == 0  # asked, never connected
    assert os.listdir(tmp_path) == []  # and created nothing


async def test_intent_off_is_seen_before_connecting(sandbox_factory: SandboxFactory, tmp_path: pathlib.Path) -> None:
    sandbox = await sandbox_factory(members_intent_enabled=False)
    code, out, err = await _check_online(sandbox, tmp_path)
    assert code == 3
    assert "discord: Server Members Intent: OFF" in out
    assert err.startswith("error: discord: Server Members Intent is not enabled for this application")
    assert len(err.strip().splitlines()) == 1
    assert sandbox.stats.identifies == 0


async def test_refused_token_is_one_line_exit_3(sandbox_factory: SandboxFactory, tmp_path: pathlib.Path) -> None:
    sandbox = await sandbox_factory()
    head, middle, _ = sandbox.token.split(".")
    token = f"{head}.{middle}.not-the-secret"
    code, out, err = await _check_online(sandbox, tmp_path, token)
    assert code == 3, out + err
    assert err.strip() == (
        "error: discord.token: Discord refused the token (401 Unauthorized): copy the bot token again from "
        "https://discord.com/developers/applications (your application, Bot, Reset Token) into "
        "RECONCILER_DISCORD__TOKEN"
    )
    assert token not in out + err
