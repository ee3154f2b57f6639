"""A real hikari.GatewayBot connects to the sandbox and ends up with every member of a large guild cached."""

from __future__ import annotations

import typing

import hikari
import pytest
from sandbox_support import chunk_tracker

if typing.TYPE_CHECKING:
    from sandbox_support import BotFactory, SandboxFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]


async def test_ten_thousand_member_guild_is_fully_cached_after_chunking(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(name="Big", members=10_000, roles=12, seed=7)
    available: list[int] = []

    async def on_available(event: hikari.GuildAvailableEvent) -> None:
        available.append(int(event.guild_id))

    bot = await gateway_bot_factory(sb, listeners={hikari.GuildAvailableEvent: on_available})

    cached = bot.cache.get_members_view_for_guild(guild_id)
    truth = sb.members(guild_id)
    assert set(cached) == set(truth)
    assert len(cached) == 10_000
    for user_id, expected in truth.items():
        member = cached[hikari.Snowflake(user_id)]
        assert member.username == expected.username
        assert member.global_name == expected.global_name
        assert member.nickname == expected.nick
        assert member.avatar_hash == expected.avatar
        assert member.is_bot == expected.bot
        assert member.joined_at == expected.joined_at
        assert set(member.role_ids) - {guild_id} == set(expected.role_ids)
    assert {int(r) for r in bot.cache.get_roles_view_for_guild(guild_id)} == set(sb.roles(guild_id))
    assert available == [guild_id]
    assert chunk_tracker(bot).completed == {guild_id: 1}
    assert sb.stats.full_member_requests == 1
    assert sb.stats.chunks_sent == 10


async def test_guild_create_is_small_above_large_threshold(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    big = sb.create_guild(members=400, seed=1)
    small = sb.create_guild(members=40, seed=2)
    sizes: dict[int, tuple[bool | None, int]] = {}

    async def on_available(event: hikari.GuildAvailableEvent) -> None:
        sizes[int(event.guild_id)] = (event.guild.is_large, len(event.members))

    await gateway_bot_factory(
        sb,
        intents=hikari.Intents.GUILDS | hikari.Intents.GUILD_MEMBERS | hikari.Intents.GUILD_PRESENCES,
        listeners={hikari.GuildAvailableEvent: on_available},
    )

    assert sizes[big] == (True, 1)  # only the bot itself: the rest must be chunked
    assert sizes[small] == (False, 40)  # below large_threshold, with presences: every member
