"""One test per row of DISCORD_FIDELITY.md: each payload hikari 2.7 once refused is accepted now."""

from __future__ import annotations

import typing

import aiohttp
import hikari
import hikari.applications
import pytest
from hikari.api import shard as shard_api
from hikari.impl import shard as shard_impl
from sandbox_support import EventRecorder, raw_gateway

from reconciler.sandbox import DiscordSandbox

if typing.TYPE_CHECKING:
    from sandbox_support import BotFactory, SandboxFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]


@pytest.mark.parametrize("bot_user_id", [1_058_897_343_283_331_073, 175_928_847_299_117_063])
async def test_token_first_part_is_base64_of_the_bot_user_id(bot_user_id: int) -> None:
    sb = DiscordSandbox(bot_user_id=bot_user_id)

    assert hikari.applications.get_token_id(sb.token) == bot_user_id == sb.bot_user_id


async def test_guild_objects_carry_application_id_vanity_code_and_roles(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(name="Fidelity", members=40, roles=8, seed=31)
    bot = await gateway_bot_factory(sb)

    cached = bot.cache.get_guild(guild_id)
    fetched = await bot.rest.fetch_guild(guild_id)

    assert cached is not None
    assert cached.name == fetched.name == "Fidelity"
    assert cached.application_id is None
    assert cached.vanity_url_code is None
    assert cached.owner_id == fetched.owner_id == sb.owner_id(guild_id)
    assert cached.member_count == 40
    assert {int(r) for r in fetched.roles} == set(sb.roles(guild_id))
    assert fetched.approximate_member_count == 40


async def test_startup_guild_create_is_an_available_event_not_a_join(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=10, seed=32)
    joins: list[hikari.GuildJoinEvent] = []
    available: list[hikari.GuildAvailableEvent] = []

    async def on_join(event: hikari.GuildJoinEvent) -> None:
        joins.append(event)

    async def on_available(event: hikari.GuildAvailableEvent) -> None:
        available.append(event)

    await gateway_bot_factory(sb, listeners={hikari.GuildJoinEvent: on_join, hikari.GuildAvailableEvent: on_available})

    assert [e.guild_id for e in available] == [guild_id]
    assert joins == []


async def test_guild_member_update_carries_joined_at_user_and_role_ids(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=30, seed=33)
    bot = await gateway_bot_factory(sb)
    events = EventRecorder(bot, hikari.MemberUpdateEvent)
    user_id = sb.plain_member_id(guild_id)
    role_id = next(r for r, info in sb.roles(guild_id).items() if r != guild_id and not info.managed)

    async with raw_gateway(sb) as raw:
        await raw.identify(sb, intents=int(hikari.Intents.GUILD_MEMBERS))
        await sb.update_member(guild_id, user_id, roles=[role_id])
        update = await raw.next_dispatch("GUILD_MEMBER_UPDATE")

    assert update is not None
    payload = update["d"]
    assert payload["joined_at"] == sb.member(guild_id, user_id).joined_at.isoformat()
    assert payload["roles"] == [str(role_id)]
    assert payload["user"]["id"] == str(user_id)
    assert payload["guild_id"] == str(guild_id)
    event = await events.wait_for(hikari.MemberUpdateEvent)
    assert set(event.member.role_ids) == {guild_id, role_id}


async def test_message_member_and_edit_member_reply_carry_role_ids(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=30, seed=34)
    bot = await gateway_bot_factory(sb)
    events = EventRecorder(bot, hikari.GuildMessageCreateEvent, hikari.MemberUpdateEvent)
    author = sb.admin_user_id(guild_id)
    channel_id = next(iter(sb.channels(guild_id)))

    async with raw_gateway(sb) as raw:
        await raw.identify(sb, intents=int(hikari.Intents.GUILD_MESSAGES))
        await sb.post_message(channel_id, author, "hi")
        created = await raw.next_dispatch("MESSAGE_CREATE")
    assert created is not None
    assert created["d"]["member"]["roles"] == [str(r) for r in sb.member(guild_id, author).role_ids]
    assert "user" not in created["d"]["member"]
    message = await events.wait_for(hikari.GuildMessageCreateEvent)
    assert message.member is not None
    assert message.member.user.id == author

    edited = await bot.rest.edit_member(guild_id, author, nickname="Renamed")
    assert isinstance(edited, hikari.Member)
    assert edited.nickname == "Renamed"
    assert set(edited.role_ids) == {guild_id, *sb.member(guild_id, author).role_ids}
    assert sb.member(guild_id, author).nick == "Renamed"
    await events.wait_for(hikari.MemberUpdateEvent, lambda e: e.member.nickname == "Renamed")


async def test_rest_member_list_pages_without_after_and_carries_users(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=2_500, seed=35)
    bot = await gateway_bot_factory(sb, wait_for_members=False)

    members = [m async for m in bot.rest.fetch_members(guild_id)]
    single = await bot.rest.fetch_member(guild_id, sb.owner_id(guild_id))

    assert sorted(int(m.id) for m in members) == sorted(sb.members(guild_id))
    assert all(m.user.username for m in members)
    assert single.id == sb.owner_id(guild_id)
    assert sb.stats.rest_requests["GET /guilds/{guild_id}/members"] == 4  # 3 full pages of 1000, then empty


async def test_application_commands_replies_are_complete_stored_commands(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=5, seed=36)
    bot = await gateway_bot_factory(sb)
    app = sb.application_id
    option = hikari.CommandOption(
        type=hikari.OptionType.STRING,
        name="scope",
        description="what to sync",
        autocomplete=True,
        name_localizations={hikari.Locale.FR: "portee"},
    )
    builder = (
        bot.rest.slash_command_builder("sync", "Reconcile now")
        .add_option(option)
        .set_name_localizations({hikari.Locale.DE: "abgleich"})
        .set_default_member_permissions(hikari.Permissions.MANAGE_GUILD)
    )

    first = await bot.rest.set_application_commands(app, [builder], guild=guild_id)
    again = await bot.rest.set_application_commands(app, [builder], guild=guild_id)
    fetched = await bot.rest.fetch_application_commands(app, guild=guild_id)
    created = await bot.rest.create_slash_command(app, "status", "Show sync status")
    global_commands = await bot.rest.fetch_application_commands(app)

    (command,) = first
    assert isinstance(command, hikari.SlashCommand)
    assert command.default_member_permissions == hikari.Permissions.MANAGE_GUILD
    assert command.integration_types == [hikari.ApplicationIntegrationType.GUILD_INSTALL]
    assert command.guild_id == guild_id
    assert command.options is not None
    assert command.options[0].autocomplete
    assert [c.id for c in again] == [c.id for c in fetched] == [command.id]
    assert again[0].version == command.version  # unchanged command keeps its version
    assert [c.id for c in global_commands] == [created.id]
    assert sb.commands(guild_id)[0]["name_localizations"] == {"de": "abgleich"}


async def test_interaction_create_has_every_field_hikari_needs(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=20, seed=37)
    bot = await gateway_bot_factory(sb)
    target = hikari.CommandOption(type=hikari.OptionType.USER, name="user", description="who")
    role = hikari.CommandOption(type=hikari.OptionType.ROLE, name="role", description="which")
    builder = bot.rest.slash_command_builder("inspect", "Inspect").add_option(target).add_option(role)
    await bot.rest.set_application_commands(sb.application_id, [builder], guild=guild_id)
    events = EventRecorder(bot, hikari.CommandInteractionCreateEvent)
    user_id = sb.plain_member_id(guild_id)
    role_id = next(r for r in sb.roles(guild_id) if r != guild_id)

    async with raw_gateway(sb) as raw:
        await raw.identify(sb, intents=0)
        interaction_id = await sb.invoke_command(guild_id, user_id, ["inspect"], {"user": user_id, "role": role_id})
        dispatch = await raw.next_dispatch("INTERACTION_CREATE")

    assert dispatch is not None
    payload = dispatch["d"]
    for key in (
        "app_permissions",
        "locale",
        "guild_locale",
        "channel",
        "authorizing_integration_owners",
        "context",
        "attachment_size_limit",
        "token",
        "version",
        "entitlements",
    ):
        assert key in payload, key
    assert "permissions" in payload["member"]
    assert set(payload["data"]["resolved"]) == {"users", "members", "roles"}
    event = await events.wait_for(hikari.CommandInteractionCreateEvent)
    interaction = event.interaction
    assert interaction.id == interaction_id
    assert interaction.resolved is not None
    assert hikari.Snowflake(user_id) in interaction.resolved.members
    assert hikari.Snowflake(role_id) in interaction.resolved.roles
    assert interaction.authorizing_integration_owners == {
        hikari.ApplicationIntegrationType.GUILD_INSTALL: hikari.Snowflake(guild_id)
    }
    assert interaction.context == hikari.ApplicationContextType.GUILD


async def test_callback_honours_with_response_and_unknown_ids_are_404(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=5, seed=38)
    bot = await gateway_bot_factory(sb)
    await bot.rest.set_application_commands(
        sb.application_id, [bot.rest.slash_command_builder("ping", "Ping")], guild=guild_id
    )
    interaction_id = await sb.invoke_command(guild_id, sb.owner_id(guild_id), ["ping"])
    token = sb.interaction(interaction_id).token

    response = await bot.rest.create_interaction_response(
        interaction_id, token, hikari.ResponseType.MESSAGE_CREATE, "pong"
    )

    assert response.interaction.id == interaction_id
    assert response.resource is not hikari.UNDEFINED
    assert response.resource.message is not hikari.UNDEFINED
    assert response.resource.message.content == "pong"
    with pytest.raises(hikari.NotFoundError):
        await bot.rest.create_interaction_response(interaction_id + 1, token, hikari.ResponseType.MESSAGE_CREATE, "x")
    with pytest.raises(hikari.BadRequestError):  # already acknowledged
        await bot.rest.create_interaction_response(interaction_id, token, hikari.ResponseType.MESSAGE_CREATE, "x")


async def test_deferred_reply_then_edit_then_follow_ups_through_rest(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=5, seed=39)
    bot = await gateway_bot_factory(sb)
    await bot.rest.set_application_commands(
        sb.application_id, [bot.rest.slash_command_builder("report", "Report")], guild=guild_id
    )
    interaction_id = await sb.invoke_command(guild_id, sb.owner_id(guild_id), ["report"])
    token = sb.interaction(interaction_id).token
    app = sb.application_id

    deferred = await bot.rest.create_interaction_response(
        interaction_id, token, hikari.ResponseType.DEFERRED_MESSAGE_CREATE
    )
    edited = await bot.rest.edit_interaction_response(app, token, "half way")
    follow_1 = await bot.rest.execute_webhook(app, token, "part 1", embed=hikari.Embed(title="Stats", description="ok"))
    follow_2 = await bot.rest.execute_webhook(
        app, token, "part 2", attachment=hikari.Bytes(b"a,b\n1,2\n", "report.csv")
    )
    original = await bot.rest.fetch_interaction_response(app, token)
    await bot.rest.delete_interaction_response(app, token)

    assert deferred.interaction.response_message_loading
    assert edited.content == original.content == "half way"
    assert follow_1.embeds[0].title == "Stats"
    assert [(a.filename, a.size) for a in follow_2.attachments] == [("report.csv", 8)]
    assert len({edited.id, follow_1.id, follow_2.id}) == 3
    kinds = [r["kind"] for r in sb.interaction_responses(interaction_id)]
    assert kinds == ["callback", "edit_original", "followup", "followup", "delete_original"]
    with pytest.raises(hikari.NotFoundError):
        await bot.rest.fetch_interaction_response(app, token)


async def test_application_object_is_the_application_of_this_token(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    sb.create_guild(members=5, seed=40)
    sb.create_guild(members=5, seed=41)
    bot = await gateway_bot_factory(sb)

    application = await bot.rest.fetch_application()

    assert application.id == sb.application_id
    assert len(application.public_key) == 32
    assert application.approximate_guild_count == 2
    assert application.approximate_user_install_count == 0
    assert application.flags & hikari.ApplicationFlags.GUILD_MEMBERS_INTENT


@pytest.mark.parametrize("members_intent", [True, False], ids=["members-intent-on", "no-members-intent"])
async def test_application_flags_say_whether_the_members_intent_is_enabled(
    sandbox_factory: SandboxFactory, members_intent: bool
) -> None:
    """Discord: GATEWAY_GUILD_MEMBERS 1<<14 or GATEWAY_GUILD_MEMBERS_LIMITED 1<<15 set iff the intent is on."""
    sb = await sandbox_factory(members_intent_enabled=members_intent)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{sb.rest_url}/oauth2/applications/@me", headers={"Authorization": f"Bot {sb.token}"}) as reply,
    ):
        assert reply.status == 200
        assert "X-RateLimit-Bucket" in reply.headers
        flags = int((await reply.json())["flags"])
    assert bool(flags & (1 << 14 | 1 << 15)) is members_intent


@pytest.mark.parametrize(
    "compression",
    [
        shard_api.GatewayCompression.TRANSPORT_ZSTD_STREAM,
        shard_api.GatewayCompression.TRANSPORT_ZLIB_STREAM,
        shard_api.GatewayCompression.PAYLOAD_ZLIB_STREAM,
        None,
    ],
    ids=["zstd-stream", "zlib-stream", "payload-zlib", "plain"],
)
async def test_every_transport_hikari_can_ask_for_works(
    sandbox_factory: SandboxFactory,
    gateway_bot_factory: BotFactory,
    monkeypatch: pytest.MonkeyPatch,
    compression: shard_api.GatewayCompression | None,
) -> None:
    defaults = dict(shard_impl.GatewayShardImpl.__init__.__kwdefaults__ or {})
    defaults["compression"] = compression
    monkeypatch.setattr(shard_impl.GatewayShardImpl.__init__, "__kwdefaults__", defaults)
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=2_100, seed=42)

    bot = await gateway_bot_factory(sb)

    assert len(bot.cache.get_members_view_for_guild(guild_id)) == 2_100
