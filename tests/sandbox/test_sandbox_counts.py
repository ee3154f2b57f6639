"""Discord's count routes, computed from the sandbox's ground truth: what the count audit reads.

`GET /guilds/{id}/roles/member-counts` maps each role but @everyone to its holders (zero included);
`GET /guilds/{id}?with_counts=true` adds `approximate_member_count` and `approximate_presence_count`.
Both carry Discord's rate-limit headers and errors: 404 Unknown Guild (10004), 403 Missing Access (50001)
for a guild the bot has left.
"""

from __future__ import annotations

import asyncio
import typing

import aiohttp
import hikari
import pytest

from reconciler.discord.counts import DiscordCountReader
from reconciler.domain.counts import GuildCounts
from reconciler.sandbox import SandboxSettings

if typing.TYPE_CHECKING:
    from sandbox_support import BotFactory, SandboxFactory

    from reconciler.sandbox import DiscordSandbox

pytestmark = pytest.mark.asyncio

RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-RateLimit-Reset-After")


def _holders(sb: DiscordSandbox, guild_id: int) -> dict[str, int]:
    """Counted here from the members, independently of the route."""
    counts = {str(role_id): 0 for role_id in sb.roles(guild_id) if role_id != guild_id}
    for member in sb.members(guild_id).values():
        for role_id in member.role_ids:
            counts[str(role_id)] += 1
    return counts


async def test_role_member_counts_follow_the_members_and_carry_rate_limit_headers(
    sandbox_factory: SandboxFactory,
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=300, roles=9, seed=71)
    empty = await sb.create_role(guild_id, name="nobody yet")
    role_ids = [r for r in sb.roles(guild_id) if r not in {guild_id, empty}]
    human = sb.plain_member_id(guild_id)
    auth = {"Authorization": f"Bot {sb.token}"}
    async with aiohttp.ClientSession(sb.rest_url) as http:

        async def counts() -> dict[str, int]:
            async with http.get(f"/api/v10/guilds/{guild_id}/roles/member-counts", headers=auth) as reply:
                assert reply.status == 200
                assert reply.content_type == "application/json"
                assert all(reply.headers[name] for name in (*RATE_LIMIT_HEADERS, "X-RateLimit-Bucket"))
                return typing.cast("dict[str, int]", await reply.json())

        first = await counts()
        assert first == _holders(sb, guild_id)
        assert str(guild_id) not in first, "@everyone is not in Discord's map"
        assert first[str(empty)] == 0
        assert all(isinstance(value, int) for value in first.values())
        assert sum(first.values()) > 0

        await sb.update_member(guild_id, human, roles=[empty, *role_ids[:2]])
        await sb.remove_member(guild_id, next(u for u, m in sb.members(guild_id).items() if role_ids[3] in m.role_ids))
        second = await counts()
    assert second == _holders(sb, guild_id)
    assert second[str(empty)] == 1
    assert second[str(role_ids[3])] == first[str(role_ids[3])] - 1


async def test_guild_with_counts_adds_the_approximate_counts(sandbox_factory: SandboxFactory) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=120, roles=4, seed=72)
    await sb.add_member(guild_id, username="newcomer")
    auth = {"Authorization": f"Bot {sb.token}"}
    async with aiohttp.ClientSession(sb.rest_url) as http:
        async with http.get(f"/api/v10/guilds/{guild_id}", params={"with_counts": "true"}, headers=auth) as reply:
            assert reply.status == 200
            assert all(reply.headers[name] for name in RATE_LIMIT_HEADERS)
            counted = await reply.json()
        async with http.get(f"/api/v10/guilds/{guild_id}", headers=auth) as reply:
            plain = await reply.json()
    assert counted["approximate_member_count"] == sb.member_count(guild_id) == 121
    assert counted["approximate_presence_count"] == 0, "no gateway session: nobody the sandbox models is online"
    assert "approximate_member_count" not in plain
    assert "approximate_presence_count" not in plain


@pytest.mark.parametrize("path", ["/guilds/{}", "/guilds/{}/roles/member-counts"])
async def test_unknown_and_departed_guilds_answer_as_discord_does(sandbox_factory: SandboxFactory, path: str) -> None:
    sb = await sandbox_factory(settings=SandboxSettings(rest_rate_limit=(2, 60.0)))
    kept = sb.create_guild(members=10, seed=73)
    left = sb.create_guild(members=10, seed=74)
    await sb.remove_guild(left)
    auth = {"Authorization": f"Bot {sb.token}"}
    async with aiohttp.ClientSession(sb.rest_url) as http:
        async with http.get("/api/v10" + path.format(123), headers=auth) as unknown:
            assert unknown.status == 404
            assert await unknown.json() == {"message": "Unknown Guild", "code": 10004}
        async with http.get("/api/v10" + path.format(left), headers=auth) as departed:
            assert departed.status == 403
            assert await departed.json() == {"message": "Missing Access", "code": 50001}
        statuses: list[int] = []
        for _ in range(3):
            async with http.get("/api/v10" + path.format(kept), headers=auth) as reply:
                statuses.append(reply.status)
                if reply.status == 429:
                    assert (await reply.json())["retry_after"] > 0
                    assert reply.headers["Retry-After"]
                    assert reply.headers["X-RateLimit-Scope"] == "user"
        async with http.get("/api/v10" + path.format(kept), headers={"Authorization": "Bot nope"}) as unauthorized:
            assert unauthorized.status == 401
    assert statuses == [200, 200, 429]


async def test_hikari_reads_both_routes_and_the_bot_counts_as_online(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=200, roles=6, seed=75)
    left = sb.create_guild(members=10, seed=76)
    bot = await gateway_bot_factory(sb)
    await sb.remove_guild(left)

    guild = await bot.rest.fetch_guild(guild_id)
    held = await bot.rest.fetch_role_member_counts(guild_id)
    counts = await DiscordCountReader(bot.rest).fetch_counts(guild_id)

    assert guild.approximate_member_count == 200
    assert guild.approximate_active_member_count == 1, "the bot, connected, is the one presence modelled"
    assert {str(int(role)): n for role, n in held.items()} == _holders(sb, guild_id)
    assert counts == GuildCounts(members=200, role_members={int(role): n for role, n in _holders(sb, guild_id).items()})
    with pytest.raises(hikari.NotFoundError):
        await bot.rest.fetch_role_member_counts(123)
    with pytest.raises(hikari.ForbiddenError):
        await DiscordCountReader(bot.rest).fetch_counts(left)


async def test_hikari_paces_itself_on_the_routes_rate_limit_headers(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory(settings=SandboxSettings(rest_rate_limit=(2, 1.0)))
    guild_id = sb.create_guild(members=50, roles=4, seed=77)
    bot = await gateway_bot_factory(sb)
    reader = DiscordCountReader(bot.rest)
    loop = asyncio.get_running_loop()

    started = loop.time()
    readings = [await reader.fetch_counts(guild_id) for _ in range(3)]
    elapsed = loop.time() - started

    assert readings == [readings[0]] * 3
    # Two requests per second per route and guild: the third of each route waits for the window to reset,
    # which hikari learns from X-RateLimit-Reset-After; Discord (here the sandbox) never has to say 429.
    assert elapsed >= 0.9
    assert sb.stats.rest_rate_limited == 0
    assert sb.stats.rest_requests["GET /guilds/{guild_id}/roles/member-counts"] == 3
