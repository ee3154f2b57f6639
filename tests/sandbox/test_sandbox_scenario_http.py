"""The scenario API over HTTP (`/_sandbox/...`) and the standalone `reconciler sandbox` process."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import typing

import aiohttp
import pytest
from sandbox_support import raw_gateway

from reconciler.sandbox import standalone

if typing.TYPE_CHECKING:
    from sandbox_support import SandboxFactory


GUILDS_AND_MEMBERS = (1 << 0) | (1 << 1)


@pytest.mark.asyncio
async def test_guilds_members_roles_and_messages_over_http(sandbox_factory: SandboxFactory) -> None:
    sb = await sandbox_factory()
    async with aiohttp.ClientSession(sb.base_url) as http:
        async with http.post("/_sandbox/guilds", json={"name": "HTTP", "members": 50, "roles": 6, "seed": 3}) as r:
            assert r.status == 201
            guild = await r.json()
        guild_id = int(guild["id"])
        assert (guild["name"], guild["member_count"], len(guild["role_ids"])) == ("HTTP", 50, 6)
        async with http.get(f"/_sandbox/guilds/{guild_id}/members") as r:
            assert len(await r.json()) == 50

        async with raw_gateway(sb) as raw:
            await raw.identify(sb, intents=GUILDS_AND_MEMBERS | (1 << 9))
            role = guild["role_ids"][1]
            async with http.post(
                f"/_sandbox/guilds/{guild_id}/members", json={"username": "via.http", "nick": "H", "roles": [role]}
            ) as r:
                assert r.status == 201
                member = await r.json()
            user_id = int(member["user_id"])
            added = await raw.next_dispatch("GUILD_MEMBER_ADD")
            async with http.patch(
                f"/_sandbox/guilds/{guild_id}/members/{user_id}", json={"nick": None, "roles": []}
            ) as r:
                assert (await r.json())["roles"] == []
            updated = await raw.next_dispatch("GUILD_MEMBER_UPDATE")
            async with http.delete(f"/_sandbox/guilds/{guild_id}/members/{user_id}") as r:
                assert r.status == 204
            removed = await raw.next_dispatch("GUILD_MEMBER_REMOVE")
            async with http.post(f"/_sandbox/guilds/{guild_id}/roles", json={"name": "Ops", "permissions": "32"}) as r:
                role_id = (await r.json())["id"]
            async with http.patch(f"/_sandbox/guilds/{guild_id}/roles/{role_id}", json={"name": "Ops Team"}) as r:
                assert (await r.json())["name"] == "Ops Team"
            async with http.delete(f"/_sandbox/guilds/{guild_id}/roles/{role_id}") as r:
                assert r.status == 204
            channel_id = guild["channel_ids"][0]
            async with http.post(
                f"/_sandbox/channels/{channel_id}/messages", json={"author_id": guild["owner_id"], "content": "hey"}
            ) as r:
                message_id = (await r.json())["id"]
            message = await raw.next_dispatch("MESSAGE_CREATE")

        async with http.get(f"/_sandbox/guilds/{guild_id}/members/{user_id}") as r:
            assert r.status == 404
        async with http.post("/_sandbox/guilds/123/members", json={}) as r:
            assert r.status == 404
        async with http.post("/_sandbox/guilds", data=b"{oops") as r:
            assert r.status == 400

    assert added is not None
    assert added["d"]["nick"] == "H"
    assert updated is not None
    assert updated["d"]["roles"] == []
    assert removed is not None
    assert message is not None
    assert message["d"]["id"] == message_id
    assert user_id not in sb.members(guild_id)
    assert [r.name for r in sb.roles(guild_id).values()].count("Ops Team") == 0


@pytest.mark.asyncio
async def test_interactions_and_gateway_controls_over_http(sandbox_factory: SandboxFactory) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=10, seed=4)
    auth = {"Authorization": f"Bot {sb.token}"}
    async with aiohttp.ClientSession(sb.base_url) as http:
        async with http.put(
            f"/api/v10/applications/{sb.application_id}/guilds/{guild_id}/commands",
            json=[{"name": "ping", "description": "Ping", "type": 1}],
            headers=auth,
        ) as r:
            assert r.status == 200
        async with raw_gateway(sb) as raw:
            await raw.identify(sb, intents=GUILDS_AND_MEMBERS)
            async with http.post(
                "/_sandbox/interactions",
                json={"guild_id": str(guild_id), "user_id": str(sb.owner_id(guild_id)), "command": ["ping"]},
            ) as r:
                assert r.status == 201
                interaction_id = (await r.json())["id"]
            created = await raw.next_dispatch("INTERACTION_CREATE")
            assert created is not None
            token = created["d"]["token"]
            async with http.post(
                f"/api/v10/interactions/{interaction_id}/{token}/callback",
                params={"with_response": "true"},
                json={"type": 4, "data": {"content": "pong"}},
            ) as r:
                assert (await r.json())["resource"]["message"]["content"] == "pong"
            async with http.get(f"/_sandbox/interactions/{interaction_id}") as r:
                record = await r.json()

            async with http.post("/_sandbox/gateway/pause") as r:
                assert sb.paused
            async with http.post("/_sandbox/gateway/resume") as r:
                assert not sb.paused
            async with http.post("/_sandbox/gateway/disconnect", json={"resumable": False}) as r:
                assert r.status == 200
            invalid = await raw.receive()

    assert [r["kind"] for r in record["responses"]] == ["callback"]
    assert record["responses"][0]["body"] == {"type": 4, "data": {"content": "pong"}}
    assert record["command"] == ["ping"]
    assert invalid is not None
    assert (invalid["op"], invalid["d"]) == (9, False)


@pytest.mark.asyncio
async def test_standalone_process_prints_its_line_and_stops_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reconciler.sandbox.standalone",
        "--guilds",
        "2",
        "--members",
        "30",
        "--seed",
        "5",
        "--shards",
        "2",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{line['rest_url']}/api/v10/gateway/bot", headers={"Authorization": f"Bot {line['token']}"}
            ) as r:
                gateway = await r.json()
            async with http.get(f"{line['scenario_url']}") as r:
                state = await r.json()
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)

    assert set(line) >= {"rest_url", "token", "application_id", "guild_ids"}
    assert gateway["shards"] == 2
    assert gateway["url"] == line["gateway_url"]
    assert state["guild_ids"] == line["guild_ids"]
    assert sorted((int(g) >> 22) % 2 for g in line["guild_ids"]) == [0, 1]
    assert code == 0


def test_add_subcommand_registers_sandbox_with_its_options() -> None:
    parser = argparse.ArgumentParser(prog="reconciler")
    subparsers = parser.add_subparsers(dest="command")
    standalone.add_subcommand(subparsers)

    args = parser.parse_args(["sandbox", "--port", "8765", "--members", "5", "--guilds", "3", "--seed", "9"])

    assert args.func is standalone.run
    assert (args.host, args.port, args.members, args.guilds, args.seed) == ("127.0.0.1", 8765, 5, 3, 9)


@pytest.mark.asyncio
async def test_member_fields_change_over_http_as_discord_sends_them(sandbox_factory: SandboxFactory) -> None:
    # Boost, timeout, screening, member flags and guild avatar: set through the scenario API, sent in
    # GUILD_MEMBER_UPDATE (the same member object as REST) with Discord's names and types; DID_REJOIN on a rejoin.
    sb = await sandbox_factory()
    async with aiohttp.ClientSession(sb.base_url) as http:
        async with http.post("/_sandbox/guilds", json={"name": "Fields", "members": 5, "seed": 4}) as r:
            guild_id = int((await r.json())["id"])
        async with http.get(f"/_sandbox/guilds/{guild_id}/members") as r:
            user_id = int(next(m for m in await r.json() if not m["bot"])["user_id"])
        fields = {
            "premium_since": "2024-02-01T10:00:00+00:00",
            "communication_disabled_until": "2024-03-02T10:00:00+00:00",
            "pending": True,
            "flags": 2,
            "guild_avatar": "a_guild",
        }
        async with raw_gateway(sb) as raw:
            await raw.identify(sb, intents=GUILDS_AND_MEMBERS)
            async with http.patch(f"/_sandbox/guilds/{guild_id}/members/{user_id}", json=fields) as r:
                assert r.status == 200
                shown = await r.json()
            update = await raw.next_dispatch("GUILD_MEMBER_UPDATE")
            for bad in (
                {"flags": -1},
                {"flags": "2"},
                {"pending": "yes"},
                {"premium_since": "yesterday"},
                {"communication_disabled_until": "2024-03-02T10:00:00"},
                {"guild_avatar": 5},
            ):
                async with http.patch(f"/_sandbox/guilds/{guild_id}/members/{user_id}", json=bad) as r:
                    assert r.status == 400, bad
            async with http.delete(f"/_sandbox/guilds/{guild_id}/members/{user_id}") as r:
                assert r.status == 204
            async with http.post(f"/_sandbox/guilds/{guild_id}/members", json={"user_id": str(user_id)}) as r:
                rejoined = await r.json()
    assert {key: shown[key] for key in fields} == fields
    data = update["d"]
    assert data["premium_since"] == "2024-02-01T10:00:00.000000+00:00"
    assert data["communication_disabled_until"] == "2024-03-02T10:00:00.000000+00:00"
    assert (data["pending"], data["flags"], data["avatar"]) == (True, 2, "a_guild")
    assert rejoined["flags"] == 1, "DID_REJOIN"
    assert (rejoined["pending"], rejoined["premium_since"], rejoined["guild_avatar"]) == (False, None, None)
