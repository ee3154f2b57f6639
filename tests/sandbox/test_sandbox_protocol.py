"""Wire-level gateway and REST rules checked with a bare client: close codes, chunk limits, error bodies."""

from __future__ import annotations

import typing

import aiohttp
import pytest
from sandbox_support import RawGateway, raw_gateway

from reconciler.sandbox import SandboxSettings

if typing.TYPE_CHECKING:
    from sandbox_support import SandboxFactory

pytestmark = pytest.mark.asyncio

GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_PRESENCES = 1 << 8


async def _chunks(raw: RawGateway, count: int | None = None) -> list[dict[str, typing.Any]]:
    chunks: list[dict[str, typing.Any]] = []
    while True:
        payload = await raw.next_dispatch("GUILD_MEMBERS_CHUNK")
        assert payload is not None
        chunks.append(payload["d"])
        if len(chunks) == (count or payload["d"]["chunk_count"]):
            return chunks


@pytest.mark.parametrize("compress", ["zlib-stream", "zstd-stream", None])
async def test_hello_identify_ready_and_heartbeat(sandbox_factory: SandboxFactory, compress: str | None) -> None:
    sb = await sandbox_factory(heartbeat_interval_ms=45_000)
    guild_id = sb.create_guild(members=10, seed=51)
    async with raw_gateway(sb, compress=compress) as raw:
        hello = await raw.receive()
        assert hello == {"t": None, "s": None, "op": 10, "d": {"heartbeat_interval": 45_000}}
        await raw.send(1, None)
        assert await raw.receive() == {"t": None, "s": None, "op": 11, "d": None}
        await raw.send(2, {"token": sb.token, "intents": GUILDS, "properties": {}, "shard": [0, 1]})
        ready = await raw.receive()
        guild_create = await raw.receive()

    assert ready is not None
    assert guild_create is not None
    assert (ready["t"], ready["s"]) == ("READY", 1)
    assert ready["d"]["guilds"] == [{"id": str(guild_id), "unavailable": True}]
    assert ready["d"]["application"]["id"] == str(sb.application_id)
    assert ready["d"]["resume_gateway_url"] == sb.gateway_url
    assert (guild_create["t"], guild_create["s"]) == ("GUILD_CREATE", 2)
    assert guild_create["d"]["unavailable"] is False
    assert guild_create["d"]["large"] is False


@pytest.mark.parametrize(
    ("identify", "code"),
    [
        ({"token": "bad", "intents": GUILDS}, 4004),
        ({"intents": GUILDS, "shard": [2, 2]}, 4010),
        ({"intents": 1 << 30}, 4013),
    ],
    ids=["bad token", "invalid shard", "invalid intents"],
)
async def test_identify_errors_close_with_discord_codes(
    sandbox_factory: SandboxFactory, identify: dict[str, typing.Any], code: int
) -> None:
    sb = await sandbox_factory()
    async with raw_gateway(sb) as raw:
        await raw.receive()
        await raw.send(2, {"token": sb.token, "properties": {}, **identify})
        assert await raw.receive() is None
        assert raw.close_code == code


async def test_disallowed_intent_closes_with_4014(sandbox_factory: SandboxFactory) -> None:
    sb = await sandbox_factory(members_intent_enabled=False)
    async with raw_gateway(sb) as raw:
        assert await raw.identify(sb, intents=GUILDS | GUILD_MEMBERS) is None
        assert raw.close_code == 4014


@pytest.mark.parametrize(
    ("op", "data", "code"),
    [(8, {"guild_id": "1", "query": "", "limit": 0}, 4003), (99, None, 4001)],
    ids=["not authenticated", "unknown opcode"],
)
async def test_protocol_errors_close_with_discord_codes(
    sandbox_factory: SandboxFactory, op: int, data: object, code: int
) -> None:
    sb = await sandbox_factory()
    async with raw_gateway(sb) as raw:
        await raw.receive()
        await raw.send(op, data)
        assert await raw.receive() is None
        assert raw.close_code == code


async def test_undecodable_payload_closes_with_4002(sandbox_factory: SandboxFactory) -> None:
    sb = await sandbox_factory()
    async with raw_gateway(sb) as raw:
        await raw.receive()
        await raw.ws.send_str("{not json")
        assert await raw.receive() is None
        assert raw.close_code == 4002


async def test_second_identify_closes_with_4005(sandbox_factory: SandboxFactory) -> None:
    sb = await sandbox_factory()
    async with raw_gateway(sb) as raw:
        await raw.identify(sb, intents=GUILDS)
        await raw.send(2, {"token": sb.token, "intents": GUILDS, "properties": {}})
        assert await raw.next_dispatch("NEVER") is None
        assert raw.close_code == 4005


async def test_full_member_request_is_chunked_by_1000_with_nonce(sandbox_factory: SandboxFactory) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=2_500, seed=52)
    async with raw_gateway(sb) as raw:
        await raw.identify(sb, intents=GUILDS | GUILD_MEMBERS)
        await raw.send(8, {"guild_id": str(guild_id), "query": "", "limit": 0, "nonce": "n1"})
        chunks = await _chunks(raw)
        await raw.send(8, {"guild_id": str(guild_id), "query": "", "limit": 0, "nonce": "n2"})
        limited = await raw.next_dispatch("RATE_LIMITED")

    assert [len(c["members"]) for c in chunks] == [1000, 1000, 500]
    assert [(c["chunk_index"], c["chunk_count"], c["nonce"]) for c in chunks] == [
        (0, 3, "n1"),
        (1, 3, "n1"),
        (2, 3, "n1"),
    ]
    assert all(c["guild_id"] == str(guild_id) for c in chunks)
    assert "not_found" not in chunks[0]
    ids = [m["user"]["id"] for c in chunks for m in c["members"]]
    assert sorted(int(i) for i in ids) == sorted(sb.members(guild_id))
    assert limited is not None
    assert limited["d"]["opcode"] == 8
    assert 29 < limited["d"]["retry_after"] <= 30
    assert limited["d"]["meta"] == {"guild_id": str(guild_id), "nonce": "n2"}


async def test_query_user_ids_and_nonce_rules(sandbox_factory: SandboxFactory) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=400, seed=53)
    for index in range(120):
        sb.add_member_nowait(guild_id, username=f"zed{index:03}")
    members = list(sb.members(guild_id))
    async with raw_gateway(sb) as raw:
        await raw.identify(sb, intents=GUILDS | GUILD_MEMBERS)
        await raw.send(8, {"guild_id": str(guild_id), "query": "zed", "limit": 0})
        (by_query,) = await _chunks(raw)
        await raw.send(8, {"guild_id": str(guild_id), "query": "ZED00", "limit": 5})
        (limited,) = await _chunks(raw)
        await raw.send(8, {"guild_id": str(guild_id), "user_ids": [str(members[0]), "42"], "nonce": "x" * 33})
        (by_ids,) = await _chunks(raw)

    assert len(by_query["members"]) == 100  # a query returns at most 100
    assert all(m["user"]["username"].startswith("zed") for m in by_query["members"])
    assert [m["user"]["username"] for m in limited["members"]] == [f"zed00{i}" for i in range(5)]
    assert [m["user"]["id"] for m in by_ids["members"]] == [str(members[0])]
    assert by_ids["not_found"] == ["42"]
    assert "nonce" not in by_ids  # a nonce over 32 bytes is ignored


async def test_resume_replays_after_seq_and_bad_resume_is_invalid_session(sandbox_factory: SandboxFactory) -> None:
    """A server-side drop keeps the session (a client closing with 1000/1001 would end it)."""
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=50, seed=54)
    async with raw_gateway(sb) as raw:
        ready = await raw.identify(sb, intents=GUILDS | GUILD_MEMBERS)
        assert ready is not None
        await raw.next_dispatch("GUILD_CREATE")
        session_id, seq = ready["session_id"], raw.seq
        await sb.disconnect(resumable=True)
        assert await raw.receive() is None
        assert raw.close_code == 4000
    first = sb.add_member_nowait(guild_id, username="first")
    second = sb.add_member_nowait(guild_id, username="second")

    async with raw_gateway(sb) as raw:
        await raw.receive()
        await raw.send(6, {"token": sb.token, "session_id": session_id, "seq": seq})
        replayed = [await raw.receive(), await raw.receive(), await raw.receive()]
    async with raw_gateway(sb) as raw:
        await raw.receive()
        await raw.send(6, {"token": sb.token, "session_id": "nope", "seq": 1})
        invalid = await raw.receive()

    assert [p["t"] for p in replayed if p] == ["GUILD_MEMBER_ADD", "GUILD_MEMBER_ADD", "RESUMED"]
    assert [p["d"]["user"]["id"] for p in replayed[:2] if p] == [str(first), str(second)]
    assert [p["s"] for p in replayed if p] == [seq + 1, seq + 2, seq + 3]
    assert invalid == {"t": None, "s": None, "op": 9, "d": False}


async def test_event_payload_shapes(sandbox_factory: SandboxFactory) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=20, seed=55)
    user_id = sb.plain_member_id(guild_id)
    role_id = next(r for r in sb.roles(guild_id) if r != guild_id)
    async with raw_gateway(sb) as raw:
        await raw.identify(sb, intents=GUILDS | GUILD_MEMBERS)
        sb.add_member_nowait(guild_id, user_id=user_id)  # Discord may re-send an add for a known member
        sb.remove_member_nowait(guild_id, user_id)
        sb.delete_role_nowait(guild_id, role_id)
        add = await raw.next_dispatch("GUILD_MEMBER_ADD")
        remove = await raw.next_dispatch("GUILD_MEMBER_REMOVE")
        delete = await raw.next_dispatch("GUILD_ROLE_DELETE")

    assert add is not None
    assert remove is not None
    assert delete is not None
    assert add["d"]["user"]["id"] == str(user_id)
    assert add["d"]["guild_id"] == str(guild_id)
    assert set(remove["d"]) == {"guild_id", "user"}
    assert delete["d"] == {"guild_id": str(guild_id), "role_id": str(role_id)}


async def test_rest_errors_and_rate_limit_headers(sandbox_factory: SandboxFactory) -> None:
    sb = await sandbox_factory(settings=SandboxSettings(rest_rate_limit=(3, 60.0)))
    guild_id = sb.create_guild(members=5, seed=56)
    auth = {"Authorization": f"Bot {sb.token}"}
    async with aiohttp.ClientSession(sb.rest_url) as http:
        async with http.get("/api/v10/users/@me", headers={"Authorization": "Bot nope"}) as unauthorized:
            assert unauthorized.status == 401
            assert await unauthorized.json() == {"message": "401: Unauthorized", "code": 0}
        async with http.get("/api/v10/guilds/123", headers=auth) as unknown_guild:
            assert unknown_guild.status == 404
            assert await unknown_guild.json() == {"message": "Unknown Guild", "code": 10004}
        async with http.get(f"/guilds/{guild_id}/members/42", headers=auth) as unknown_member:
            assert unknown_member.status == 404
            assert (await unknown_member.json())["code"] == 10007
        async with http.get(f"/guilds/{guild_id}/members", params={"limit": "1001"}, headers=auth) as too_many:
            assert too_many.status == 400
            assert (await too_many.json())["code"] == 50035
        statuses: list[tuple[int, str]] = []
        for _ in range(4):
            async with http.get(f"/guilds/{guild_id}/roles", headers=auth) as reply:
                statuses.append((reply.status, reply.headers["X-RateLimit-Remaining"]))
                bucket = reply.headers["X-RateLimit-Bucket"]
                assert float(reply.headers["X-RateLimit-Reset-After"]) > 0
                if reply.status == 429:
                    body = await reply.json()
                    assert body["global"] is False
                    assert body["retry_after"] > 0
                    assert reply.headers["X-RateLimit-Scope"] == "user"
        assert bucket
    assert statuses == [(200, "2"), (200, "1"), (200, "0"), (429, "0")]
    assert sb.stats.rest_rate_limited == 1


async def test_client_closing_with_1000_ends_its_session(sandbox_factory: SandboxFactory) -> None:
    sb = await sandbox_factory()
    async with raw_gateway(sb) as raw:
        ready = await raw.identify(sb, intents=GUILDS)
        assert ready is not None
    async with raw_gateway(sb) as raw:
        await raw.receive()
        await raw.send(6, {"token": sb.token, "session_id": ready["session_id"], "seq": 1})
        assert await raw.receive() == {"t": None, "s": None, "op": 9, "d": False}


async def test_missing_heartbeats_time_the_session_out(sandbox_factory: SandboxFactory) -> None:
    sb = await sandbox_factory(heartbeat_interval_ms=200)
    async with raw_gateway(sb) as raw:
        assert await raw.identify(sb, intents=GUILDS) is not None
        assert await raw.next_dispatch("NEVER", timeout=5) is None
        assert raw.close_code == 4009
    assert sb.gateway.sessions == []
