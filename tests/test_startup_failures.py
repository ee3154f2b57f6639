"""Each first-deploy mistake ends `reconciler run` with one line naming cause and fix, and its own exit code.

The real process against the sandbox: the privileged intent off (4014), a wrong token (401), a closed
port, the metrics port already taken, a database that cannot be reached or created. No traceback on the
terminal; the traceback is in the log at DEBUG.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import socket
import sys
import typing

import pytest

if typing.TYPE_CHECKING:
    from sandbox_support import SandboxFactory

    from reconciler.sandbox import DiscordSandbox

pytestmark = pytest.mark.asyncio


async def _run(env: dict[str, str], cwd: pathlib.Path, *args: str) -> tuple[int, str]:
    """`python -m reconciler run` (or `args`) to the end; its exit code and everything it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reconciler",
        *(args or ("run",)),
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(60):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode()


def _environment(sandbox: DiscordSandbox, tmp_path: pathlib.Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env.update(
        {
            "RECONCILER_DISCORD__TOKEN": sandbox.token,
            "RECONCILER_DISCORD__REST_URL": sandbox.rest_url,
            "RECONCILER_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'data' / 'r.db'}",
            "RECONCILER_OBSERVABILITY__METRICS_ADDRESS": "127.0.0.1:0",
            "RECONCILER_SCHEDULE__ENABLED": "false",
        }
    )
    env.update({f"RECONCILER_{key}": value for key, value in settings.items()})
    return env


def _last_line(output: str, secret: str) -> str:
    assert "Traceback" not in output, output
    assert "traceback=" not in output, output
    assert secret not in output
    return output.strip().splitlines()[-1]


def _wrong_token(sandbox: DiscordSandbox) -> str:
    head, middle, _ = sandbox.token.split(".")
    return f"{head}.{middle}.not-the-secret"


async def test_members_intent_off_exits_3_and_says_where_to_turn_it_on(
    sandbox_factory: SandboxFactory, tmp_path: pathlib.Path
) -> None:
    sandbox = await sandbox_factory(members_intent_enabled=False)
    sandbox.create_guild(members=20, seed=3)
    code, output = await _run(_environment(sandbox, tmp_path), tmp_path)
    line = _last_line(output, sandbox.token)
    assert code == 3, output
    assert line.startswith("error: discord: Server Members Intent is not enabled"), line
    assert "4014" in line
    assert "Privileged Gateway Intents" in line


async def test_refused_token_exits_3_and_never_shows_it(
    sandbox_factory: SandboxFactory, tmp_path: pathlib.Path
) -> None:
    sandbox = await sandbox_factory()
    sandbox.create_guild(members=20, seed=4)
    token = _wrong_token(sandbox)
    code, output = await _run(_environment(sandbox, tmp_path, DISCORD__TOKEN=token), tmp_path)
    line = _last_line(output, token)
    assert code == 3, output
    assert line.startswith("error: discord.token: Discord refused the token (401"), line


async def test_malformed_token_is_a_config_error_before_connecting(
    sandbox_factory: SandboxFactory, tmp_path: pathlib.Path
) -> None:
    sandbox = await sandbox_factory()
    code, output = await _run(_environment(sandbox, tmp_path, DISCORD__TOKEN="abc"), tmp_path)
    line = _last_line(output, "abc.")
    assert code == 2, output
    assert line.startswith("config error: RECONCILER_DISCORD__TOKEN: discord.token: is not a bot token"), line
    assert sandbox.stats.rest_requests.total() == 0
    assert not (tmp_path / "data").exists()


async def test_unreachable_rest_url_exits_4_after_the_retry_budget(
    sandbox_factory: SandboxFactory, tmp_path: pathlib.Path
) -> None:
    sandbox = await sandbox_factory()
    with socket.socket() as closed:  # a port nothing listens on: bound, never listening
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        env = _environment(
            sandbox, tmp_path, DISCORD__REST_URL=url, DISCORD__REST_RETRIES="1", OBSERVABILITY__LOG_LEVEL="DEBUG"
        )
        code, output = await _run(env, tmp_path)
    assert code == 4, output
    line = output.strip().splitlines()[-1]
    assert line.startswith("error: discord.rest_url: cannot reach Discord after 1 retry"), line
    assert url.removeprefix("http://") in line
    # At DEBUG the traceback is in the log, on one line of its own, never on the terminal as such.
    assert "traceback=" in output
    assert "\nTraceback" not in output
    assert sandbox.token not in output


async def test_metrics_address_in_use_exits_5(sandbox_factory: SandboxFactory, tmp_path: pathlib.Path) -> None:
    sandbox = await sandbox_factory()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        code, output = await _run(_environment(sandbox, tmp_path, OBSERVABILITY__METRICS_ADDRESS=address), tmp_path)
        check_code, check_output = await _run(
            _environment(sandbox, tmp_path, OBSERVABILITY__METRICS_ADDRESS=address), tmp_path, "check-config"
        )
    line = _last_line(output, sandbox.token)
    assert code == 5, output
    assert line.startswith(f"error: observability.metrics_address: cannot listen on {address}"), line
    assert "in use" in line
    assert check_code == 5, check_output
    assert sandbox.stats.identifies == 0


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql+asyncpg://postgres@127.0.0.1:1/test", "cannot connect"),
        ("sqlite+aiosqlite:///{tmp}/a-file/data/r.db", "is not a folder"),
    ],
    ids=["unreachable", "not-creatable"],
)
async def test_database_unusable_exits_6(
    sandbox_factory: SandboxFactory, tmp_path: pathlib.Path, url: str, reason: str
) -> None:
    sandbox = await sandbox_factory()
    (tmp_path / "a-file").write_text("not a folder")
    url = url.format(tmp=tmp_path)
    code, output = await _run(_environment(sandbox, tmp_path, DATABASE__URL=url), tmp_path)
    line = _last_line(output, sandbox.token)
    assert code == 6, output
    assert line.startswith("error: database.url: "), line
    assert reason in line
    assert sandbox.stats.identifies == 0
