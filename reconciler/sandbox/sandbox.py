"""DiscordSandbox: one aiohttp server speaking Discord's gateway and REST, plus the scenario API tests drive."""

from __future__ import annotations

__all__ = ["DiscordSandbox"]

import contextlib
import gc
import logging
import re
import secrets
import time
import typing

from aiohttp import web

from reconciler.sandbox import (
    commands,
    gateway,
    history,
    ids,
    interactions,
    payloads,
    permissions,
    rest,
    scenario_http,
    state,
    synthetic,
    views,
)
from reconciler.sandbox.settings import BotIdentity, Faults, GatewayIntent, SandboxSettings
from reconciler.sandbox.state import UNSET, Unset
from reconciler.sandbox.stats import SandboxStats

if typing.TYPE_CHECKING:
    import types

_LOGGER: typing.Final = logging.getLogger(__name__)

JSON = dict[str, typing.Any]

DEFAULT_BOT_USER_ID: typing.Final = ids.snowflake(1_672_531_200_000, worker=1, increment=1)
_OWNER_USER_ID: typing.Final = ids.snowflake(1_609_459_200_000, worker=2, increment=7)
_MENTION: typing.Final = re.compile(r"<@!?(\d+)>")
_FREEZE_AT_MEMBERS: typing.Final = 100_000
"""Guilds this large are moved out of the garbage collector's reach (`gc.freeze()`) once built."""


class DiscordSandbox:
    """A Discord emulator an unmodified `hikari.GatewayBot(token, rest_url=sb.rest_url)` connects to.

    Mutations come in two forms: `*_nowait` methods change the ground truth and queue the gateway events
    at once (cheap enough for thousands per second); the async forms also wait until the events have been
    written to every connected socket.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        members_intent_enabled: bool = True,
        presences_intent_enabled: bool = True,
        message_content_intent_enabled: bool = True,
        heartbeat_interval_ms: int = 41_250,
        settings: SandboxSettings | None = None,
        bot_user_id: int = DEFAULT_BOT_USER_ID,
        bot_username: str = "Reconciler",
        token: str | None = None,
    ) -> None:
        if settings is None:
            settings = SandboxSettings(
                heartbeat_interval_ms=heartbeat_interval_ms,
                members_intent_enabled=members_intent_enabled,
                presences_intent_enabled=presences_intent_enabled,
                message_content_intent_enabled=message_content_intent_enabled,
            )
        self.settings = settings
        self.faults = Faults()
        self.stats = SandboxStats()
        self.truth = state.GroundTruth()
        bot = state.User(id=bot_user_id, username=bot_username.lower(), global_name=bot_username, bot=True)
        owner = state.User(id=_OWNER_USER_ID, username="sandbox.developer", global_name="Sandbox Developer")
        self.truth.users[bot.id] = bot
        self.identity = BotIdentity(
            token=token or ids.make_token(bot.id),
            user=bot,
            application_id=bot.id,
            application_name=bot_username,
            owner=owner,
            verify_key=secrets.token_hex(32),
        )
        self._host = host
        self._port = port
        self._snowflakes = ids.SnowflakeFactory()
        self.command_registry = commands.CommandRegistry(
            application_id=self.identity.application_id, snowflakes=self._snowflakes
        )
        self.interactions = interactions.Interactions(
            truth=self.truth,
            identity=self.identity,
            settings=settings,
            registry=self.command_registry,
            snowflakes=self._snowflakes,
            on_message=self._bot_message_event,
        )
        self.gateway = gateway.Gateway(
            truth=self.truth, identity=self.identity, settings=settings, faults=self.faults, stats=self.stats
        )
        self._rest = rest.RestApi(self)
        self._runner: web.AppRunner | None = None
        self._base_url = ""

    # -- lifecycle -----------------------------------------------------------------------------------

    async def __aenter__(self) -> typing.Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind the port and serve gateway, REST and `/_sandbox/` routes."""
        app = web.Application(middlewares=[self._rest.middleware], client_max_size=32 * 1024 * 1024)
        app.router.add_get("/", self.gateway.handle)
        app.router.add_get("/resume", self.gateway.handle)
        app.add_routes(self._rest.routes())
        app.add_routes(scenario_http.routes(self))
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._base_url = f"http://{host}:{port}"
        self.gateway.public_url = f"ws://{host}:{port}"
        _LOGGER.info("sandbox listening", extra={"url": self._base_url})

    async def stop(self) -> None:
        """Close every gateway socket and stop serving."""
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- identity ------------------------------------------------------------------------------------

    @property
    def rest_url(self) -> str:
        """What to pass as `hikari.GatewayBot(rest_url=...)`: the server's base URL (routes sit at its root)."""
        return self._base_url

    @property
    def base_url(self) -> str:
        """`http://host:port`; the scenario API lives under `/_sandbox/`."""
        return self._base_url

    @property
    def gateway_url(self) -> str:
        """The websocket URL `GET /gateway/bot` hands out."""
        return self.gateway.public_url

    @property
    def token(self) -> str:
        """The bot token; its first part is the base64 of the bot's user id."""
        return self.identity.token

    @property
    def application_id(self) -> int:
        """The application id (equal to the bot's user id, as for every modern bot)."""
        return self.identity.application_id

    @property
    def bot_user_id(self) -> int:
        """The bot's user id."""
        return self.identity.user.id

    # -- guilds --------------------------------------------------------------------------------------

    @property
    def guild_ids(self) -> list[int]:
        """Guild ids in creation order."""
        return list(self.truth.guilds)

    def create_guild(
        self,
        name: str | None = None,
        members: int = 100,
        roles: int = 12,
        channels: int = 3,
        seed: int = 0,
        *,
        guild_id: int | None = None,
        shard: tuple[int, int] | None = None,
        prewarm: bool = True,
    ) -> int:
        """Generate a deterministic guild of `members` members (owner, an admin and the bot included).

        `shard=(id, count)` picks an id that lands on that shard; `prewarm` encodes every member's JSON now
        rather than on the first chunk request. A guild created while the bot is connected is announced
        with GUILD_CREATE (a join).
        """
        spec = synthetic.GuildSpec(
            name=name, members=members, roles=roles, channels=channels, seed=seed, guild_id=guild_id, shard=shard
        )
        gc_enabled = gc.isenabled()
        gc.disable()  # millions of new long-lived objects: collections in between would only rescan them
        try:
            guild = synthetic.generate_guild(
                spec, bot=self.identity.user, taken_guild_ids=self.truth.guilds, taken_user_ids=set(self.truth.users)
            )
            for member in guild.members.values():
                self.truth.users.setdefault(member.user.id, member.user)
            self.truth.add_guild(guild)
            if prewarm:
                for member in guild.members.values():
                    payloads.member_wire(member)
        finally:
            if gc_enabled:
                gc.enable()
        if members >= _FREEZE_AT_MEMBERS:
            gc.freeze()
        self.gateway.dispatch_guild_create(guild, joined=True)
        _LOGGER.info("sandbox guild created", extra={"guild_id": guild.id, "members": len(guild.members)})
        return guild.id

    async def remove_guild(self, guild_id: int) -> None:
        """The bot leaves (or is removed from) a guild: GUILD_DELETE without `unavailable`."""
        self.truth.guild(guild_id)
        self.gateway.dispatch(
            guild_id, "GUILD_DELETE", payloads.dumps({"id": str(guild_id)}), intent=GatewayIntent.GUILDS
        )
        self.truth.remove_guild(guild_id)
        await self.flush()

    async def set_guild_available(self, guild_id: int, available: bool) -> None:
        """Emulate an outage: GUILD_DELETE `unavailable: true`, later GUILD_CREATE `unavailable: false`."""
        guild = self.truth.guild(guild_id)
        guild.unavailable = not available
        if available:
            self.gateway.dispatch_guild_create(guild, joined=False)
        else:
            data = payloads.dumps({"id": str(guild_id), "unavailable": True})
            self.gateway.dispatch(guild_id, "GUILD_DELETE", data, intent=GatewayIntent.GUILDS)
        await self.flush()

    def guild(self, guild_id: int) -> views.GuildInfo:
        """Summary of a guild."""
        return views.guild_info(self.truth.guild(guild_id))

    def owner_id(self, guild_id: int) -> int:
        """The guild owner (an admin by ownership)."""
        return self.truth.guild(guild_id).owner_id

    def admin_user_id(self, guild_id: int) -> int:
        """A member who is not the owner but holds a role with Manage Guild."""
        admin = self.truth.guild(guild_id).admin_user_id
        if admin is None:
            msg = f"guild {guild_id} is too small to have an admin besides its owner"
            raise LookupError(msg)
        return admin

    def plain_member_id(self, guild_id: int) -> int:
        """A human member without Manage Guild (not the owner, not the admin, not the bot)."""
        guild = self.truth.guild(guild_id)
        for member in guild.members.values():
            if member.user.bot or member.user.id == guild.owner_id:
                continue
            if not permissions.base_permissions(guild, member) & permissions.MANAGE_GUILD:
                return member.user.id
        msg = f"guild {guild_id} has no plain member"
        raise LookupError(msg)

    def members(self, guild_id: int) -> dict[int, views.MemberInfo]:
        """Ground truth: every member (the bot included) by user id."""
        return {uid: views.member_info(m) for uid, m in self.truth.guild(guild_id).members.items()}

    def member(self, guild_id: int, user_id: int) -> views.MemberInfo:
        """Ground truth for one member."""
        return views.member_info(self.truth.member(guild_id, user_id))

    def member_count(self, guild_id: int) -> int:
        """How many members the guild has (the bot included)."""
        return len(self.truth.guild(guild_id).members)

    def roles(self, guild_id: int) -> dict[int, views.RoleInfo]:
        """Every role of the guild by id (@everyone has the guild's id)."""
        return {rid: views.role_info(r) for rid, r in self.truth.guild(guild_id).roles.items()}

    def channels(self, guild_id: int) -> dict[int, views.ChannelInfo]:
        """Every channel of the guild by id."""
        return {cid: views.channel_info(c) for cid, c in self.truth.guild(guild_id).channels.items()}

    # -- members -------------------------------------------------------------------------------------

    def _member_event(self, name: str, guild_id: int, member: state.Member) -> None:
        wire = payloads.member_wire(member)
        data = wire[:-1] + b',"guild_id":"%d"}' % guild_id
        self.gateway.dispatch(guild_id, name, data, intent=GatewayIntent.GUILD_MEMBERS)

    def add_member_nowait(
        self,
        guild_id: int,
        *,
        user_id: int | None = None,
        username: str | None = None,
        global_name: str | None = None,
        avatar: str | None = None,
        bot: bool = False,
        nick: str | None = None,
        roles: typing.Iterable[int] = (),
    ) -> int:
        """A user joins (GUILD_MEMBER_ADD). A known `user_id` reuses that user; joining twice re-sends the add."""
        now_ms = int(time.time() * 1000)
        if user_id is not None and user_id in self.truth.users:
            user = self.truth.users[user_id]
        else:
            new_id = user_id if user_id is not None else self._snowflakes.next()
            user = state.User(
                id=new_id,
                username=username or f"user{new_id % 1_000_000_007}",
                global_name=global_name,
                avatar=avatar,
                bot=bot,
            )
        member = self.truth.add_member(guild_id, user, joined_at=payloads.iso_timestamp(now_ms), nick=nick, roles=roles)
        self._member_event("GUILD_MEMBER_ADD", guild_id, member)
        return user.id

    async def add_member(
        self,
        guild_id: int,
        *,
        user_id: int | None = None,
        username: str | None = None,
        global_name: str | None = None,
        avatar: str | None = None,
        bot: bool = False,
        nick: str | None = None,
        roles: typing.Iterable[int] = (),
    ) -> int:
        """`add_member_nowait`, then wait until the event is on the wire."""
        user_id = self.add_member_nowait(
            guild_id,
            user_id=user_id,
            username=username,
            global_name=global_name,
            avatar=avatar,
            bot=bot,
            nick=nick,
            roles=roles,
        )
        await self.flush()
        return user_id

    def update_member_nowait(
        self,
        guild_id: int,
        user_id: int,
        *,
        nick: str | Unset | None = UNSET,
        roles: typing.Iterable[int] | Unset = UNSET,
        username: str | Unset = UNSET,
        global_name: str | Unset | None = UNSET,
        avatar: str | Unset | None = UNSET,
        fields: state.MemberFields | None = None,
    ) -> None:
        """Change a member (GUILD_MEMBER_UPDATE); a user change is announced in every guild of the user.

        `fields` changes boost, timeout, screening, member flags and guild avatar, as Discord does.
        """
        self.truth.member(guild_id, user_id)
        guild_ids = [guild_id]
        if not (isinstance(username, Unset) and isinstance(global_name, Unset) and isinstance(avatar, Unset)):
            guild_ids = self.truth.update_user(user_id, username=username, global_name=global_name, avatar=avatar)
        member = self.truth.update_member(guild_id, user_id, nick=nick, roles=roles, fields=fields)
        for gid in guild_ids:
            changed = member if gid == guild_id else self.truth.member(gid, user_id)
            self._member_event("GUILD_MEMBER_UPDATE", gid, changed)

    async def update_member(
        self,
        guild_id: int,
        user_id: int,
        *,
        nick: str | Unset | None = UNSET,
        roles: typing.Iterable[int] | Unset = UNSET,
        username: str | Unset = UNSET,
        global_name: str | Unset | None = UNSET,
        avatar: str | Unset | None = UNSET,
        fields: state.MemberFields | None = None,
    ) -> None:
        """`update_member_nowait`, then wait until the event is on the wire."""
        self.update_member_nowait(
            guild_id,
            user_id,
            nick=nick,
            roles=roles,
            username=username,
            global_name=global_name,
            avatar=avatar,
            fields=fields,
        )
        await self.flush()

    def remove_member_nowait(self, guild_id: int, user_id: int) -> None:
        """A member leaves (GUILD_MEMBER_REMOVE, which carries only the guild id and the user)."""
        member = self.truth.remove_member(guild_id, user_id)
        data = payloads.dumps({"guild_id": str(guild_id), "user": payloads.user_obj(member.user)})
        self.gateway.dispatch(guild_id, "GUILD_MEMBER_REMOVE", data, intent=GatewayIntent.GUILD_MEMBERS)

    async def remove_member(self, guild_id: int, user_id: int) -> None:
        """`remove_member_nowait`, then wait until the event is on the wire."""
        self.remove_member_nowait(guild_id, user_id)
        await self.flush()

    # -- roles ---------------------------------------------------------------------------------------

    def _role_event(self, name: str, guild_id: int, role: state.Role) -> None:
        data = payloads.dumps({"guild_id": str(guild_id), "role": payloads.role_obj(role)})
        self.gateway.dispatch(guild_id, name, data, intent=GatewayIntent.GUILDS)

    def create_role_nowait(
        self,
        guild_id: int,
        *,
        name: str = "new role",
        permissions: int = 0,
        color: int = 0,
        hoist: bool = False,
        mentionable: bool = False,
    ) -> int:
        """Create a role (GUILD_ROLE_CREATE) just above @everyone."""
        guild = self.truth.guild(guild_id)
        for existing in guild.roles.values():
            if existing.id != guild_id:
                existing.position += 1
        role = state.Role(
            id=self._snowflakes.next(),
            name=name,
            permissions=permissions,
            color=color,
            hoist=hoist,
            mentionable=mentionable,
            position=1,
        )
        self.truth.add_role(guild_id, role)
        self._role_event("GUILD_ROLE_CREATE", guild_id, role)
        return role.id

    async def create_role(
        self,
        guild_id: int,
        *,
        name: str = "new role",
        permissions: int = 0,
        color: int = 0,
        hoist: bool = False,
        mentionable: bool = False,
    ) -> int:
        """`create_role_nowait`, then wait until the event is on the wire."""
        role_id = self.create_role_nowait(
            guild_id, name=name, permissions=permissions, color=color, hoist=hoist, mentionable=mentionable
        )
        await self.flush()
        return role_id

    def update_role_nowait(
        self,
        guild_id: int,
        role_id: int,
        *,
        name: str | Unset = UNSET,
        permissions: int | Unset = UNSET,
        color: int | Unset = UNSET,
        hoist: bool | Unset = UNSET,
        mentionable: bool | Unset = UNSET,
        position: int | Unset = UNSET,
    ) -> None:
        """Change a role (GUILD_ROLE_UPDATE)."""
        role = self.truth.role(guild_id, role_id)
        if not isinstance(name, Unset):
            role.name = name
        if not isinstance(permissions, Unset):
            role.permissions = permissions
        if not isinstance(color, Unset):
            role.color = color
        if not isinstance(hoist, Unset):
            role.hoist = hoist
        if not isinstance(mentionable, Unset):
            role.mentionable = mentionable
        if not isinstance(position, Unset):
            role.position = position
        self._role_event("GUILD_ROLE_UPDATE", guild_id, role)

    async def update_role(
        self,
        guild_id: int,
        role_id: int,
        *,
        name: str | Unset = UNSET,
        permissions: int | Unset = UNSET,
        color: int | Unset = UNSET,
        hoist: bool | Unset = UNSET,
        mentionable: bool | Unset = UNSET,
        position: int | Unset = UNSET,
    ) -> None:
        """`update_role_nowait`, then wait until the event is on the wire."""
        self.update_role_nowait(
            guild_id,
            role_id,
            name=name,
            permissions=permissions,
            color=color,
            hoist=hoist,
            mentionable=mentionable,
            position=position,
        )
        await self.flush()

    def delete_role_nowait(self, guild_id: int, role_id: int) -> None:
        """Delete a role (GUILD_ROLE_DELETE only: Discord sends no member updates for its holders)."""
        self.truth.delete_role(guild_id, role_id)
        data = payloads.dumps({"guild_id": str(guild_id), "role_id": str(role_id)})
        self.gateway.dispatch(guild_id, "GUILD_ROLE_DELETE", data, intent=GatewayIntent.GUILDS)

    async def delete_role(self, guild_id: int, role_id: int) -> None:
        """`delete_role_nowait`, then wait until the event is on the wire."""
        self.delete_role_nowait(guild_id, role_id)
        await self.flush()

    # -- messages ------------------------------------------------------------------------------------

    def post_message_nowait(self, channel_id: int, author_id: int, content: str) -> int:
        """A member posts in a channel (MESSAGE_CREATE with the author's member, role ids only)."""
        channel = self.truth.channel(channel_id)
        guild_id = channel.guild_id
        member = self.truth.member(guild_id, author_id)
        message_id = self._snowflakes.next()
        mentions: list[JSON] = []
        for match in _MENTION.finditer(content):
            mentioned = self.truth.users.get(int(match.group(1)))
            if mentioned is not None:
                mentions.append(payloads.user_obj(mentioned))
        message = payloads.message_obj(
            message_id=message_id,
            channel_id=channel_id,
            author=member.user,
            content=content,
            timestamp=payloads.iso_timestamp(ids.snowflake_ms(message_id)),
            guild_id=guild_id,
            member=payloads.member_obj(member, with_user=False),
            mentions=mentions,
        )
        channel.last_message_id = message_id
        channel.history.add(history.StoredMessage(id=message_id, author_id=author_id, content=content))
        if not channel.bot_can_read:
            return message_id  # Discord sends no event for a channel the bot cannot view
        data = payloads.dumps(message)
        redacted: bytes | None = None
        mentions_bot = any(m["id"] == str(self.bot_user_id) for m in mentions)
        if not mentions_bot and author_id != self.bot_user_id:
            message["content"] = ""
            redacted = payloads.dumps(message)
        self.gateway.dispatch(guild_id, "MESSAGE_CREATE", data, intent=GatewayIntent.GUILD_MESSAGES, redacted=redacted)
        return message_id

    async def post_message(self, channel_id: int, author_id: int, content: str) -> int:
        """`post_message_nowait`, then wait until the event is on the wire."""
        message_id = self.post_message_nowait(channel_id, author_id, content)
        await self.flush()
        return message_id

    def bot_message_nowait(self, channel_id: int, body: JSON) -> JSON:
        """The bot posts in a channel through REST; returns the message object."""
        channel = self.truth.channel(channel_id)
        message_id = self._snowflakes.next()
        message = payloads.message_obj(
            message_id=message_id,
            channel_id=channel_id,
            author=self.identity.user,
            content=str(body.get("content") or ""),
            timestamp=payloads.iso_timestamp(ids.snowflake_ms(message_id)),
            embeds=[dict(e, type=e.get("type", "rich")) for e in typing.cast("list[JSON]", body.get("embeds") or [])],
        )
        channel.last_message_id = message_id
        self._bot_message_event("MESSAGE_CREATE", channel.guild_id, message)
        return message

    def message_history_obj(self, channel_id: int, message: history.StoredMessage) -> JSON:
        """A stored message as `GET /channels/{id}/messages` returns it (no `member`, no `guild_id`)."""
        author = self.truth.users.get(message.author_id) or self.identity.user
        return payloads.message_obj(
            message_id=message.id,
            channel_id=channel_id,
            author=author,
            content=message.content if self.settings.message_content_intent_enabled else "",
            timestamp=payloads.iso_timestamp(ids.snowflake_ms(message.id)),
            webhook_id=message.webhook_id,
        )

    def seed_history(
        self, channel_id: int, author_ids: typing.Sequence[int], count: int, *, start_ms: int, step_ms: int = 1
    ) -> list[int]:
        """`count` past messages in a channel, authors taken in turn, no gateway event (benchmarks, tests).

        Their ids are made at `start_ms` (Unix ms) plus `step_ms` each, below anything posted later.
        """
        channel = self.truth.channel(channel_id)
        made: list[int] = []
        for index in range(count):
            unix_ms = start_ms + index * step_ms
            message_id = ids.snowflake(unix_ms, worker=30, process=channel_id & 31, increment=index)
            author = author_ids[index % len(author_ids)]
            channel.history.add(history.StoredMessage(id=message_id, author_id=author, content=""))
            made.append(message_id)
        if made and (channel.last_message_id is None or made[-1] > channel.last_message_id):
            channel.last_message_id = made[-1]
        return made

    def create_thread(self, parent_id: int, name: str, owner_id: int) -> int:
        """An active public thread under a text channel (type 11), announced with THREAD_CREATE."""
        parent = self.truth.channel(parent_id)
        guild = self.truth.guild(parent.guild_id)
        thread_id = self._snowflakes.next()
        thread = state.Channel(
            id=thread_id, guild_id=guild.id, name=name, type=11, parent_id=parent_id, owner_id=owner_id
        )
        guild.threads[thread_id] = thread
        self.truth.channel_guild[thread_id] = guild.id
        data = dict(payloads.thread_obj(thread), newly_created=True)
        self.gateway.dispatch(guild.id, "THREAD_CREATE", payloads.dumps(data), intent=GatewayIntent.GUILDS)
        return thread_id

    def set_channel_readable(self, channel_id: int, readable: bool) -> None:
        """Give or take the bot's VIEW_CHANNEL / READ_MESSAGE_HISTORY in a channel (403 on its history)."""
        self.truth.channel(channel_id).bot_can_read = readable

    def _keep_bot_message(self, message: JSON) -> None:
        try:
            channel = self.truth.channel(int(message["channel_id"]))
        except state.UnknownEntityError:
            return
        webhook = message.get("webhook_id")
        channel.history.add(
            history.StoredMessage(
                id=int(message["id"]),
                author_id=int(message["author"]["id"]),
                content=str(message.get("content") or ""),
                webhook_id=int(webhook) if webhook is not None else None,
            )
        )

    def _bot_message_event(self, name: str, guild_id: int, message: JSON) -> None:
        if name == "MESSAGE_DELETE":
            with contextlib.suppress(state.UnknownEntityError):
                self.truth.channel(int(message["channel_id"])).history.remove(int(message["id"]))
            data = {"id": message["id"], "channel_id": message["channel_id"], "guild_id": str(guild_id)}
        else:
            data = dict(message, guild_id=str(guild_id))
            if name == "MESSAGE_CREATE":
                self._keep_bot_message(message)
            bot_member = self.truth.guilds[guild_id].members.get(self.bot_user_id)
            if bot_member is not None:
                data["member"] = payloads.member_obj(bot_member, with_user=False)
        self.gateway.dispatch(guild_id, name, payloads.dumps(data), intent=GatewayIntent.GUILD_MESSAGES)

    # -- interactions --------------------------------------------------------------------------------

    def invoke_command_nowait(
        self,
        guild_id: int,
        user_id: int,
        path: typing.Sequence[str],
        options: typing.Mapping[str, typing.Any] | None = None,
        *,
        channel_id: int | None = None,
        locale: str = "en-US",
        enforce_permissions: bool = True,
    ) -> int:
        """A member runs a registered slash command (INTERACTION_CREATE to the guild's shard); returns its id.

        `path` is the command name then subcommand group/subcommand names; option types come from the
        registered command (user options get `data.resolved`). Raises LookupError if no such command is
        registered and PermissionError if the Discord client would not offer it to this member.
        """
        record = self.interactions.invoke(
            guild_id,
            user_id,
            path,
            options,
            channel_id=channel_id,
            locale=locale,
            enforce_permissions=enforce_permissions,
        )
        self.gateway.dispatch(guild_id, "INTERACTION_CREATE", payloads.dumps(record.payload), intent=0)
        return record.id

    async def invoke_command(
        self,
        guild_id: int,
        user_id: int,
        path: typing.Sequence[str],
        options: typing.Mapping[str, typing.Any] | None = None,
        *,
        channel_id: int | None = None,
        locale: str = "en-US",
        enforce_permissions: bool = True,
    ) -> int:
        """`invoke_command_nowait`, then wait until the event is on the wire."""
        interaction_id = self.invoke_command_nowait(
            guild_id,
            user_id,
            path,
            options,
            channel_id=channel_id,
            locale=locale,
            enforce_permissions=enforce_permissions,
        )
        await self.flush()
        return interaction_id

    def interaction(self, interaction_id: int) -> interactions.InteractionRecord:
        """The record of an invocation (created_at, token, responses...)."""
        return self.interactions.record(interaction_id)

    def interaction_responses(self, interaction_id: int) -> list[JSON]:
        """Every response the bot made, in order: `{"kind", "at", "elapsed", "body", "message", ...}`."""
        return self.interactions.responses(interaction_id)

    async def wait_for_responses(self, interaction_id: int, count: int = 1, timeout: float = 10.0) -> list[JSON]:
        """Wait for at least `count` responses to an interaction."""
        return await self.interactions.wait_for_responses(interaction_id, count, timeout)

    def commands(self, guild_id: int | None = None) -> list[JSON]:
        """Registered commands: global (None) or of one guild."""
        return self.command_registry.list(guild_id)

    # -- gateway controls ----------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """Whether dispatches are currently dropped."""
        return self.gateway.paused

    async def disconnect(
        self, resumable: bool = True, *, code: int = gateway.UNKNOWN_ERROR, shard_id: int | None = None
    ) -> None:
        """Drop the bot's connections (of one shard, or all).

        Resumable: sockets close with `code` (4000), sessions stay and buffer events for RESUME. Not
        resumable: INVALID_SESSION (d=false), so the bot identifies again and gets fresh GUILD_CREATEs.
        """
        await self.gateway.disconnect(resumable=resumable, code=code, shard_id=shard_id)

    async def pause(self) -> None:
        """Drop every dispatch until `resume()`: the bot misses those events for good (state still changes)."""
        await self.flush()
        self.gateway.paused = True

    async def resume(self) -> None:
        """Deliver dispatches again."""
        self.gateway.paused = False

    async def reconnect_request(self, *, shard_id: int | None = None) -> None:
        """Send RECONNECT (op 7) to one shard or all: the bot reconnects and resumes."""
        await self.gateway.reconnect_request(shard_id=shard_id)

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued gateway payload has been written to its socket."""
        await self.gateway.flush(timeout)

    def session_count(self) -> int:
        """Gateway sessions with an open socket."""
        return len(self.gateway.connected_sessions())
