"""The README's "Try it against the sandbox", as a newcomer types it: two processes and the scenario API.

`reconciler sandbox` prints its JSON line; `reconciler run` gets rest_url and token from it; a member
added through the scenario API reaches the database; both processes stop cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import sqlite3
import sys
import typing

import aiohttp
import pytest
import pytest_asyncio
from waiting import eventually

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.asyncio


def _environment(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env.update({f"RECONCILER_{key}": value for key, value in settings.items()})
    return env


async def _start(*args: str, cwd: pathlib.Path, env: dict[str, str], log: pathlib.Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "reconciler",
            *args,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if args[0] == "sandbox" else out,
            stderr=out,
        )


async def _stop(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(15):
            return await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()
        return -999


@pytest_asyncio.fixture
async def sandbox_process(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, typing.Any]]]:
    """`reconciler sandbox --members 50` plus the test's `sandbox_options` mark, and its JSON line."""
    mark = request.node.get_closest_marker("sandbox_options")
    options = list(mark.args) if mark else []
    process = await _start(
        "sandbox", "--members", "50", *options, cwd=tmp_path, env=_environment(), log=tmp_path / "sandbox.log"
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            line = await process.stdout.readline()
        yield process, json.loads(line)
    finally:
        await _stop(process)


def _members(database: pathlib.Path) -> dict[str, str]:
    if not database.exists():
        return {}
    with sqlite3.connect(database) as connection:
        try:
            rows = connection.execute(
                "SELECT u.username, m.status FROM members m JOIN users u ON u.id = m.user_id"
            ).fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return {}
    return {str(name): str(status) for name, status in rows}


async def test_the_bot_follows_the_sandbox_driven_through_the_scenario_api(
    sandbox_process: tuple[asyncio.subprocess.Process, dict[str, typing.Any]], tmp_path: pathlib.Path
) -> None:
    sandbox, line = sandbox_process
    assert set(line) >= {"rest_url", "token", "scenario_url", "guild_ids"}
    database = tmp_path / "data" / "sandbox.db"
    env = _environment(
        DISCORD__REST_URL=line["rest_url"],
        DISCORD__TOKEN=line["token"],
        DATABASE__URL=f"sqlite+aiosqlite:///{database}",
        OBSERVABILITY__METRICS_ADDRESS="127.0.0.1:0",
    )
    bot = await _start("run", cwd=tmp_path, env=env, log=tmp_path / "bot.log")
    try:

        async def members() -> dict[str, str]:
            return await asyncio.to_thread(_members, database)

        synced = await eventually(members, lambda rows: len(rows) == 50, within=30)
        assert set(synced.values()) == {"active"}

        scenario, guild = line["scenario_url"], line["guild_ids"][0]
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{scenario}/guilds/{guild}/members", json={"username": "newcomer"}) as reply:
                assert reply.status == 201
                newcomer = (await reply.json())["user_id"]
            await eventually(members, lambda rows: rows.get("newcomer") == "active", within=15)
            async with session.delete(f"{scenario}/guilds/{guild}/members/{newcomer}") as reply:
                assert reply.status == 204
            await eventually(members, lambda rows: rows.get("newcomer") == "left", within=15)
    finally:
        code = await _stop(bot)
    assert code == 0, (tmp_path / "bot.log").read_text()[-3000:]
    assert await _stop(sandbox) == 0


@pytest.mark.sandbox_options("--no-members-intent")
async def test_a_sandbox_without_the_members_intent_is_refused_in_one_line(
    sandbox_process: tuple[asyncio.subprocess.Process, dict[str, typing.Any]], tmp_path: pathlib.Path
) -> None:
    _, line = sandbox_process
    env = _environment(
        DISCORD__REST_URL=line["rest_url"],
        DISCORD__TOKEN=line["token"],
        DATABASE__URL=f"sqlite+aiosqlite:///{tmp_path / 'data' / 'r.db'}",
        OBSERVABILITY__METRICS_ADDRESS="127.0.0.1:0",
    )
    for args in (("check-config", "--online"), ("run",)):
        log = tmp_path / f"{args[0]}.log"
        process = await _start(*args, cwd=tmp_path, env=env, log=log)
        async with asyncio.timeout(60):
            code = await process.wait()
        output = log.read_text()
        assert code == 3, output
        assert "Traceback" not in output
        assert line["token"] not in output
        assert output.strip().splitlines()[-1].startswith("error: discord: Server Members Intent is not enabled")
