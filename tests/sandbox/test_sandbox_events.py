"""Ground-truth changes in the sandbox reach a real hikari bot's listeners and cache with the right data."""

from __future__ import annotations

import typing

import hikari
import pytest
from sandbox_support import EventRecorder, chunk_tracker, wait_until

if typing.TYPE_CHECKING:
    from sandbox_support import BotFactory, SandboxFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

_MEMBER_EVENTS = (hikari.MemberCreateEvent, hikari.MemberUpdateEvent, hikari.MemberDeleteEvent)
_ROLE_EVENTS = (hikari.RoleCreateEvent, hikari.RoleUpdateEvent, hikari.RoleDeleteEvent)


async def test_member_join_update_and_leave_reach_the_bot(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=300, seed=3)
    bot = await gateway_bot_factory(sb)
    events = EventRecorder(bot, *_MEMBER_EVENTS)
    role_ids = [r for r in sb.roles(guild_id) if r != guild_id and not sb.roles(guild_id)[r].managed][:2]

    user_id = await sb.add_member(guild_id, username="fresh.face", global_name="Fresh", roles=role_ids[:1])
    created = await events.wait_for(hikari.MemberCreateEvent, lambda e: e.user_id == user_id)
    assert created.member.username == "fresh.face"
    assert created.member.global_name == "Fresh"
    assert set(created.member.role_ids) == {guild_id, role_ids[0]}
    assert created.member.joined_at == sb.member(guild_id, user_id).joined_at

    await sb.update_member(guild_id, user_id, nick="Freshie", roles=role_ids)
    updated = await events.wait_for(hikari.MemberUpdateEvent, lambda e: e.user_id == user_id)
    assert updated.member.nickname == "Freshie"
    assert set(updated.member.role_ids) == {guild_id, *role_ids}
    assert updated.member.joined_at == sb.member(guild_id, user_id).joined_at
    assert updated.old_member is not None
    assert updated.old_member.nickname is None

    await sb.update_member(guild_id, user_id, username="renamed.face", global_name=None)
    renamed = await events.wait_for(hikari.MemberUpdateEvent, lambda e: e.member.username == "renamed.face")
    assert renamed.member.global_name is None

    await sb.remove_member(guild_id, user_id)
    removed = await events.wait_for(hikari.MemberDeleteEvent, lambda e: e.user_id == user_id)
    assert removed.user.username == "renamed.face"
    assert removed.old_member is not None
    assert bot.cache.get_member(guild_id, user_id) is None
    assert len(bot.cache.get_members_view_for_guild(guild_id)) == 300


async def test_role_create_update_delete_reach_the_bot(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=50, seed=4)
    bot = await gateway_bot_factory(sb)
    events = EventRecorder(bot, *_ROLE_EVENTS)

    role_id = await sb.create_role(guild_id, name="Raid Leader", permissions=1 << 5, color=0x00FF00)
    created = await events.wait_for(hikari.RoleCreateEvent)
    assert created.role.id == role_id
    assert created.role.name == "Raid Leader"
    assert created.role.permissions == hikari.Permissions.MANAGE_GUILD
    assert created.role.color == hikari.Color(0x00FF00)

    await sb.update_role(guild_id, role_id, name="Raid Captain", hoist=True)
    updated = await events.wait_for(hikari.RoleUpdateEvent)
    assert updated.role.name == "Raid Captain"
    assert updated.role.is_hoisted
    assert updated.old_role is not None
    assert updated.old_role.name == "Raid Leader"

    holder = next(uid for uid, m in sb.members(guild_id).items() if m.role_ids)
    held_role = sb.member(guild_id, holder).role_ids[0]
    await sb.delete_role(guild_id, held_role)
    deleted = await events.wait_for(hikari.RoleDeleteEvent)
    assert deleted.role_id == held_role
    assert bot.cache.get_role(held_role) is None
    assert held_role not in sb.member(guild_id, holder).role_ids


async def test_messages_carry_the_author_member_and_respect_message_content(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=20, seed=5)
    channel_id = next(iter(sb.channels(guild_id)))
    author = sb.admin_user_id(guild_id)
    plain = await gateway_bot_factory(sb)
    reader = await gateway_bot_factory(
        sb, intents=hikari.Intents.GUILDS | hikari.Intents.GUILD_MESSAGES | hikari.Intents.MESSAGE_CONTENT
    )
    plain_events = EventRecorder(plain, hikari.GuildMessageCreateEvent)
    reader_events = EventRecorder(reader, hikari.GuildMessageCreateEvent)

    message_id = await sb.post_message(channel_id, author, "hello there")

    seen = await plain_events.wait_for(hikari.GuildMessageCreateEvent)
    assert seen.message_id == message_id
    assert seen.author_id == author
    assert seen.member is not None
    assert set(seen.member.role_ids) == {guild_id, *sb.member(guild_id, author).role_ids}
    assert seen.content is None  # no MESSAGE_CONTENT intent: Discord sends an empty content
    read = await reader_events.wait_for(hikari.GuildMessageCreateEvent)
    assert read.content == "hello there"


async def test_guild_join_and_leave_while_connected(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    sb.create_guild(members=10, seed=6)
    bot = await gateway_bot_factory(sb)
    events = EventRecorder(bot, hikari.GuildJoinEvent, hikari.GuildLeaveEvent, hikari.GuildAvailableEvent)

    joined_id = sb.create_guild(members=1200, seed=8)
    joined = await events.wait_for(hikari.GuildJoinEvent)
    assert joined.guild_id == joined_id
    await chunk_tracker(bot).wait([joined_id])
    assert len(bot.cache.get_members_view_for_guild(joined_id)) == 1200

    await sb.remove_guild(joined_id)
    left = await events.wait_for(hikari.GuildLeaveEvent)
    assert left.guild_id == joined_id
    assert bot.cache.get_guild(joined_id) is None
    assert not events.of(hikari.GuildAvailableEvent)


async def test_ten_thousand_quick_updates_all_reach_the_cache(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=2_000, seed=9)
    bot = await gateway_bot_factory(sb)
    user_ids = [uid for uid in sb.members(guild_id) if uid != sb.bot_user_id]

    for round_ in range(5):
        for user_id in user_ids:
            sb.update_member_nowait(guild_id, user_id, nick=f"round {round_}")
    await sb.flush()

    def all_renamed() -> bool:
        cached = bot.cache.get_members_view_for_guild(guild_id)
        return all(cached[hikari.Snowflake(u)].nickname == "round 4" for u in user_ids)

    await wait_until(all_renamed, timeout=30)
    assert sb.stats.dispatches["GUILD_MEMBER_UPDATE"] == 5 * len(user_ids)


async def test_guild_outage_then_back_within_30s_leaves_hikari_rate_limited(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    """Discord's 30 s rule bites here: hikari clears the guild's members on GUILD_CREATE, and its
    automatic re-chunk is refused, so the cache holds only the bot until someone asks again later."""
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=700, seed=10)
    bot = await gateway_bot_factory(sb)
    events = EventRecorder(
        bot, hikari.GuildUnavailableEvent, hikari.GuildAvailableEvent, hikari.RequestGuildMembersRateLimitedEvent
    )

    await sb.set_guild_available(guild_id, False)
    await events.wait_for(hikari.GuildUnavailableEvent)
    await sb.set_guild_available(guild_id, True)

    back = await events.wait_for(hikari.GuildAvailableEvent)
    limited = await events.wait_for(hikari.RequestGuildMembersRateLimitedEvent)
    assert back.guild_id == limited.guild_id == guild_id
    assert len(bot.cache.get_members_view_for_guild(guild_id)) == 1  # only the bot itself
    sb.faults.member_request_window_s = 0.0  # as if retry_after had passed
    await bot.request_guild_members(guild_id)
    await chunk_tracker(bot).wait([guild_id], times=2)
    assert len(bot.cache.get_members_view_for_guild(guild_id)) == 700
