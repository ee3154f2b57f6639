"""Slash commands end to end: registration, INTERACTION_CREATE, and every response captured by the sandbox."""

from __future__ import annotations

import asyncio
import time
import typing

import arc
import hikari
import pytest
from sandbox_support import EventRecorder, wait_until

from reconciler.sandbox import SandboxSettings

if typing.TYPE_CHECKING:
    from sandbox_support import BotFactory, SandboxFactory

    from reconciler.sandbox import DiscordSandbox

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]


async def _register_sync_command(bot: hikari.GatewayBot, sb: DiscordSandbox, guild_id: int) -> None:
    users = hikari.CommandOption(
        type=hikari.OptionType.SUB_COMMAND,
        name="users",
        description="Reconcile members",
        options=[
            hikari.CommandOption(type=hikari.OptionType.USER, name="user", description="Only this user"),
            hikari.CommandOption(type=hikari.OptionType.BOOLEAN, name="force", description="Skip the guard"),
        ],
    )
    roles = hikari.CommandOption(type=hikari.OptionType.SUB_COMMAND, name="roles", description="Reconcile roles")
    builder = (
        bot.rest.slash_command_builder("sync", "Reconcile now")
        .add_option(users)
        .add_option(roles)
        .set_default_member_permissions(hikari.Permissions.MANAGE_GUILD)
    )
    await bot.rest.set_application_commands(sb.application_id, [builder], guild=guild_id)


async def test_deferred_edited_and_followed_up_command_is_captured(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=30, seed=21)
    bot = await gateway_bot_factory(sb)
    await _register_sync_command(bot, sb, guild_id)
    seen: list[hikari.CommandInteraction] = []

    async def on_interaction(event: hikari.InteractionCreateEvent) -> None:
        interaction = event.interaction
        assert isinstance(interaction, hikari.CommandInteraction)
        seen.append(interaction)
        await interaction.create_initial_response(hikari.ResponseType.DEFERRED_MESSAGE_CREATE)
        await interaction.edit_initial_response("Syncing 30 members...")
        await interaction.execute("Done: 0 changes")

    bot.subscribe(hikari.InteractionCreateEvent, on_interaction)
    admin = sb.admin_user_id(guild_id)
    target = sb.plain_member_id(guild_id)

    interaction_id = await sb.invoke_command(
        guild_id, admin, ["sync", "users"], options={"user": target, "force": True}
    )
    responses = await sb.wait_for_responses(interaction_id, count=3)

    assert [r["kind"] for r in responses] == ["callback", "edit_original", "followup"]
    assert responses[0]["body"]["type"] == 5
    assert responses[0]["elapsed"] < 3.0
    assert responses[1]["message"]["content"] == "Syncing 30 members..."
    assert responses[2]["message"]["content"] == "Done: 0 changes"
    assert responses[2]["message"]["id"] != responses[1]["message"]["id"]
    assert not responses[2]["edits_original"]
    interaction = seen[0]
    assert interaction.id == interaction_id
    assert interaction.command_name == "sync"
    assert interaction.member is not None
    assert interaction.member.permissions & hikari.Permissions.MANAGE_GUILD
    assert interaction.app_permissions is not None
    assert interaction.locale == hikari.Locale.EN_US
    assert interaction.guild_locale == hikari.Locale.EN_US
    assert interaction.channel.id in sb.channels(guild_id)
    assert interaction.registered_guild_id == guild_id
    (subcommand,) = interaction.options
    assert subcommand.name == "users"
    options = {o.name: o.value for o in subcommand.options or ()}
    assert options == {"user": hikari.Snowflake(target), "force": True}
    assert interaction.resolved is not None
    assert interaction.resolved.members[hikari.Snowflake(target)].user.id == target


async def test_follow_up_right_after_a_deferral_edits_the_loading_message(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=10, seed=22)
    bot = await gateway_bot_factory(sb)
    await _register_sync_command(bot, sb, guild_id)

    async def on_interaction(event: hikari.InteractionCreateEvent) -> None:
        assert isinstance(event.interaction, hikari.CommandInteraction)
        await event.interaction.create_initial_response(
            hikari.ResponseType.DEFERRED_MESSAGE_CREATE, flags=hikari.MessageFlag.EPHEMERAL
        )
        await event.interaction.execute("finished", flags=hikari.MessageFlag.NONE)

    bot.subscribe(hikari.InteractionCreateEvent, on_interaction)

    interaction_id = await sb.invoke_command(guild_id, sb.owner_id(guild_id), ["sync", "roles"])
    callback, followup = await sb.wait_for_responses(interaction_id, count=2)

    assert followup["edits_original"]
    assert followup["message"]["id"] == callback["message"]["id"]
    assert followup["message"]["flags"] == hikari.MessageFlag.EPHEMERAL  # the deferral's flags are kept


async def test_callback_to_an_unknown_interaction_is_404_at_once(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    sb.create_guild(members=5, seed=23)
    bot = await gateway_bot_factory(sb)

    started = time.monotonic()
    with pytest.raises(hikari.NotFoundError) as caught:
        await bot.rest.create_interaction_response(123456789, "no-such-token", hikari.ResponseType.MESSAGE_CREATE, "x")
    assert time.monotonic() - started < 1.0
    assert caught.value.code == 10062


async def test_callback_after_three_seconds_is_refused(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory(settings=SandboxSettings(interaction_ack_s=0.2))
    guild_id = sb.create_guild(members=5, seed=24)
    bot = await gateway_bot_factory(sb)
    await _register_sync_command(bot, sb, guild_id)
    failures: list[Exception] = []

    async def on_interaction(event: hikari.InteractionCreateEvent) -> None:
        assert isinstance(event.interaction, hikari.CommandInteraction)
        await asyncio.sleep(0.4)
        try:
            await event.interaction.create_initial_response(hikari.ResponseType.MESSAGE_CREATE, "too late")
        except hikari.NotFoundError as exc:
            failures.append(exc)

    bot.subscribe(hikari.InteractionCreateEvent, on_interaction)
    interaction_id = await sb.invoke_command(guild_id, sb.owner_id(guild_id), ["sync", "roles"])

    await wait_until(lambda: bool(failures))
    assert sb.interaction_responses(interaction_id) == []


async def test_invocations_follow_registration_and_permissions(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=20, seed=25)
    bot = await gateway_bot_factory(sb)

    with pytest.raises(LookupError):
        await sb.invoke_command(guild_id, sb.owner_id(guild_id), ["sync", "users"])
    await _register_sync_command(bot, sb, guild_id)
    with pytest.raises(PermissionError):
        await sb.invoke_command(guild_id, sb.plain_member_id(guild_id), ["sync", "users"])
    with pytest.raises(ValueError, match="no option"):
        await sb.invoke_command(guild_id, sb.owner_id(guild_id), ["sync", "users"], options={"nope": 1})
    with pytest.raises(ValueError, match="subcommand"):
        await sb.invoke_command(guild_id, sb.owner_id(guild_id), ["sync"])
    events = EventRecorder(bot, hikari.InteractionCreateEvent)
    await sb.invoke_command(guild_id, sb.plain_member_id(guild_id), ["sync", "users"], enforce_permissions=False)
    await events.wait_for(hikari.InteractionCreateEvent)


async def test_hikari_arc_client_syncs_and_answers(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=25, seed=26)
    ran: list[tuple[int | None, bool]] = []
    synced = asyncio.Event()

    async def sync_users(
        ctx: arc.GatewayContext,
        user: arc.Option[hikari.User | None, arc.UserParams("Only this user")] = None,
        force: arc.Option[bool, arc.BoolParams("Skip the guard")] = False,
    ) -> None:
        await ctx.defer()
        await ctx.edit_initial_response("working")
        ran.append((int(user.id) if user else None, force))
        await ctx.respond("done")

    async def on_arc_started(event: arc.StartedEvent[typing.Any]) -> None:
        synced.set()

    def attach_arc(bot: hikari.GatewayBot) -> None:
        client = arc.GatewayClient(bot, default_enabled_guilds=[guild_id])
        group = client.include_slash_group("sync", "Reconcile now", default_permissions=hikari.Permissions.MANAGE_GUILD)
        group.include(arc.slash_subcommand("users", "Reconcile members")(sync_users))
        bot.subscribe(arc.StartedEvent, on_arc_started)

    await gateway_bot_factory(sb, before_start=attach_arc)
    await asyncio.wait_for(synced.wait(), 10)
    (command,) = sb.commands(guild_id)
    assert command["name"] == "sync"
    assert command["default_member_permissions"] == str(int(hikari.Permissions.MANAGE_GUILD))
    target = sb.plain_member_id(guild_id)

    interaction_id = await sb.invoke_command(guild_id, sb.admin_user_id(guild_id), ["sync", "users"], {"user": target})
    responses = await sb.wait_for_responses(interaction_id, count=3)

    assert [r["kind"] for r in responses] == ["callback", "edit_original", "followup"]
    assert responses[2]["message"]["content"] == "done"
    assert ran == [(target, False)]
