"""Session behaviour a real hikari bot sees: resume, invalid session, pause, RECONNECT, sharding, rate limits."""

from __future__ import annotations

import typing

import hikari
import pytest
from sandbox_support import EventRecorder, chunk_tracker, wait_until

if typing.TYPE_CHECKING:
    from sandbox_support import BotFactory, SandboxFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]


async def test_resumable_disconnect_replays_missed_events(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=200, seed=11)
    bot = await gateway_bot_factory(sb)
    events = EventRecorder(bot, hikari.MemberCreateEvent, hikari.MemberUpdateEvent, hikari.ShardResumedEvent)
    victim = sb.plain_member_id(guild_id)

    await sb.disconnect(resumable=True)
    joined = sb.add_member_nowait(guild_id, username="while.away")
    sb.update_member_nowait(guild_id, victim, nick="changed while away")

    await events.wait_for(hikari.ShardResumedEvent, timeout=15)
    created = await events.wait_for(hikari.MemberCreateEvent)
    updated = await events.wait_for(hikari.MemberUpdateEvent)
    assert created.user_id == joined
    assert updated.user_id == victim
    assert updated.member.nickname == "changed while away"
    assert (sb.stats.identifies, sb.stats.resumes) == (1, 1)
    assert chunk_tracker(bot).completed == {guild_id: 1}  # a resume does not re-chunk


async def test_non_resumable_disconnect_gives_fresh_guild_create_and_chunks(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=1500, seed=12)
    bot = await gateway_bot_factory(sb)
    events = EventRecorder(bot, hikari.GuildAvailableEvent, hikari.MemberCreateEvent)

    await sb.disconnect(resumable=False)
    missed = sb.add_member_nowait(guild_id, username="missed.event")

    await events.wait_for(hikari.GuildAvailableEvent, timeout=15)
    await chunk_tracker(bot).wait([guild_id], times=2)
    assert bot.cache.get_member(guild_id, missed) is not None  # repaired by the fresh chunking
    assert not events.of(hikari.MemberCreateEvent)  # ... not by a replayed event
    assert len(bot.cache.get_members_view_for_guild(guild_id)) == 1501
    assert (sb.stats.identifies, sb.stats.resumes) == (2, 0)


async def test_events_during_a_pause_are_lost(sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=100, seed=13)
    bot = await gateway_bot_factory(sb)
    events = EventRecorder(bot, hikari.MemberCreateEvent)

    await sb.pause()
    lost = await sb.add_member(guild_id, username="lost.in.pause")
    await sb.resume()
    seen = await sb.add_member(guild_id, username="after.pause")

    await events.wait_for(hikari.MemberCreateEvent, lambda e: e.user_id == seen)
    assert [e.user_id for e in events.of(hikari.MemberCreateEvent)] == [seen]
    assert bot.cache.get_member(guild_id, lost) is None
    assert lost in sb.members(guild_id)
    assert sb.stats.dropped_dispatches == 1


async def test_reconnect_request_is_followed_by_a_resume(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    sb.create_guild(members=10, seed=14)
    bot = await gateway_bot_factory(sb)
    events = EventRecorder(bot, hikari.ShardResumedEvent)

    await sb.reconnect_request()

    await events.wait_for(hikari.ShardResumedEvent, timeout=15)
    assert (sb.stats.identifies, sb.stats.resumes) == (1, 1)


async def test_second_full_member_request_within_window_is_rate_limited(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=100, seed=15)
    bot = await gateway_bot_factory(sb)
    events = EventRecorder(bot, hikari.RequestGuildMembersRateLimitedEvent, hikari.MemberChunkEvent)

    await bot.request_guild_members(guild_id, nonce="again")

    limited = await events.wait_for(hikari.RequestGuildMembersRateLimitedEvent)
    assert limited.guild_id == guild_id
    assert limited.nonce == "again"
    assert limited.opcode == 8
    assert 0 < limited.retry_after <= 30
    assert sb.stats.rate_limited_member_requests == 1

    sb.faults.member_request_window_s = 0.0
    await bot.request_guild_members(guild_id, nonce="allowed")
    chunk = await events.wait_for(hikari.MemberChunkEvent, lambda e: e.nonce == "allowed")
    assert len(chunk.members) == 100


async def test_each_shard_gets_only_its_guilds(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_0 = sb.create_guild(members=120, seed=16, shard=(0, 2))
    guild_1 = sb.create_guild(members=80, seed=17, shard=(1, 2))
    assert ((guild_0 >> 22) % 2, (guild_1 >> 22) % 2) == (0, 1)
    bot_0 = await gateway_bot_factory(sb, shard_ids=[0], shard_count=2)
    bot_1 = await gateway_bot_factory(sb, shard_ids=[1], shard_count=2)
    events_0 = EventRecorder(bot_0, hikari.MemberCreateEvent)
    events_1 = EventRecorder(bot_1, hikari.MemberCreateEvent)

    assert set(bot_0.cache.get_guilds_view()) == {guild_0}
    assert set(bot_1.cache.get_guilds_view()) == {guild_1}
    assert len(bot_1.cache.get_members_view_for_guild(guild_1)) == 80
    await sb.add_member(guild_1, username="shard.one")
    await events_1.wait_for(hikari.MemberCreateEvent)
    await sb.add_member(guild_0, username="shard.zero")
    await events_0.wait_for(hikari.MemberCreateEvent)
    assert [e.guild_id for e in events_0.of(hikari.MemberCreateEvent)] == [guild_0]
    assert [e.guild_id for e in events_1.of(hikari.MemberCreateEvent)] == [guild_1]
    assert sb.session_count() == 2


async def test_disallowed_members_intent_closes_with_4014(sandbox_factory: SandboxFactory) -> None:
    sb = await sandbox_factory(members_intent_enabled=False)
    sb.create_guild(members=10, seed=18)
    bot = hikari.GatewayBot(
        sb.token,
        intents=hikari.Intents.GUILDS | hikari.Intents.GUILD_MEMBERS,
        rest_url=sb.rest_url,
        banner=None,
        logs=None,
        suppress_optimization_warning=True,
    )
    with pytest.raises(hikari.GatewayServerClosedConnectionError) as caught:
        await bot.start(check_for_updates=False)
    assert caught.value.code == 4014
    assert not caught.value.can_reconnect
    if bot.is_alive:
        await bot.close()
    await wait_until(lambda: sb.session_count() == 0)


async def test_bad_token_is_refused_by_rest_with_401(sandbox_factory: SandboxFactory) -> None:
    sb = await sandbox_factory()
    head, middle, _ = sb.token.split(".")
    bot = hikari.GatewayBot(
        f"{head}.{middle}.not-the-secret",
        rest_url=sb.rest_url,
        banner=None,
        logs=None,
        suppress_optimization_warning=True,
    )
    with pytest.raises(hikari.UnauthorizedError):
        await bot.start(check_for_updates=False)
    if bot.is_alive:
        await bot.close()
