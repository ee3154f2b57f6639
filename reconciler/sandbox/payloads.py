"""JSON shapes of Discord objects, field for field as the API documentation and hikari's parsers expect."""

from __future__ import annotations

__all__ = [
    "application_obj",
    "channel_obj",
    "dumps",
    "guild_create_obj",
    "guild_obj",
    "iso_timestamp",
    "member_obj",
    "member_wire",
    "message_obj",
    "own_user_obj",
    "ready_obj",
    "role_obj",
    "thread_obj",
    "user_obj",
]

import datetime
import logging
import typing

import orjson

from reconciler.sandbox import ids

if typing.TYPE_CHECKING:
    from reconciler.sandbox import state

_LOGGER: typing.Final = logging.getLogger(__name__)

JSON = dict[str, typing.Any]

_UTC: typing.Final = datetime.UTC


def dumps(value: object) -> bytes:
    """Encode JSON the way every sandbox payload is encoded."""
    return orjson.dumps(value)


def iso_timestamp(unix_ms: int) -> str:
    """Discord's ISO8601 timestamp format, e.g. `2021-03-04T05:06:07.123000+00:00`."""
    return datetime.datetime.fromtimestamp(unix_ms / 1000, tz=_UTC).isoformat(timespec="microseconds")


def user_obj(user: state.User) -> JSON:
    """Public user object (what members, authors and mentions carry)."""
    payload: JSON = {
        "id": str(user.id),
        "username": user.username,
        "avatar": user.avatar,
        "discriminator": "0",
        "public_flags": 0,
        "flags": 0,
        "banner": None,
        "accent_color": None,
        "global_name": user.global_name,
        "avatar_decoration_data": None,
        "collectibles": None,
        "primary_guild": None,
    }
    if user.bot:
        payload["bot"] = True
    return payload


def own_user_obj(user: state.User) -> JSON:
    """The bot's own user object (READY, `GET /users/@me`)."""
    payload = user_obj(user)
    payload.update(
        {"bot": True, "mfa_enabled": False, "verified": True, "email": None, "locale": "en-US", "premium_type": 0}
    )
    return payload


def member_obj(member: state.Member, *, with_user: bool = True) -> JSON:
    """Guild member object; role ids, never role objects."""
    payload: JSON = {
        "avatar": member.avatar,
        "banner": None,
        "communication_disabled_until": member.communication_disabled_until,
        "deaf": False,
        "flags": member.flags,
        "joined_at": member.joined_at,
        "mute": False,
        "nick": member.nick,
        "pending": member.pending,
        "premium_since": member.premium_since,
        "roles": [str(r) for r in member.roles],
    }
    if with_user:
        payload["user"] = user_obj(member.user)
    return payload


def member_wire(member: state.Member) -> bytes:
    """Member JSON with its user, encoded once and cached on the member until it changes."""
    wire = member.wire
    if wire is None:
        # orjson's result keeps a ~4 KiB allocation; an exact-size copy makes 1M cached members fit in 0.6 GB
        wire = member.wire = bytes(memoryview(orjson.dumps(member_obj(member))))
    return wire


def role_obj(role: state.Role) -> JSON:
    """Role object (`colors` included, as Discord sends it since 2025)."""
    payload: JSON = {
        "id": str(role.id),
        "name": role.name,
        "description": None,
        "color": role.color,
        "colors": {"primary_color": role.color, "secondary_color": None, "tertiary_color": None},
        "hoist": role.hoist,
        "icon": None,
        "unicode_emoji": None,
        "position": role.position,
        "permissions": str(role.permissions),
        "managed": role.managed,
        "mentionable": role.mentionable,
        "flags": 0,
    }
    if role.bot_id is not None:
        payload["tags"] = {"bot_id": str(role.bot_id)}
    return payload


def channel_obj(channel: state.Channel, *, with_guild_id: bool = True) -> JSON:
    """Guild text channel object (GUILD_CREATE channels lack `guild_id`)."""
    payload: JSON = {
        "id": str(channel.id),
        "type": channel.type,
        "name": channel.name,
        "position": channel.position,
        "flags": 0,
        "parent_id": str(channel.parent_id) if channel.parent_id is not None else None,
        "topic": channel.topic,
        "permission_overwrites": [],
        "nsfw": channel.nsfw,
        "rate_limit_per_user": 0,
        "last_message_id": str(channel.last_message_id) if channel.last_message_id is not None else None,
        "last_pin_timestamp": None,
        "default_auto_archive_duration": 1440,
    }
    if with_guild_id:
        payload["guild_id"] = str(channel.guild_id)
    return payload


def thread_obj(thread: state.Channel) -> JSON:
    """Active thread object (GUILD_CREATE `threads`, `GET /guilds/{id}/threads/active`)."""
    created = iso_timestamp(ids.snowflake_ms(thread.id))
    return {
        "id": str(thread.id),
        "guild_id": str(thread.guild_id),
        "parent_id": str(thread.parent_id) if thread.parent_id is not None else None,
        "owner_id": str(thread.owner_id) if thread.owner_id is not None else None,
        "type": thread.type,
        "name": thread.name,
        "flags": 0,
        "last_message_id": str(thread.last_message_id) if thread.last_message_id is not None else None,
        "rate_limit_per_user": 0,
        "message_count": len(thread.history),
        "member_count": 1,
        "total_message_sent": len(thread.history),
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": created,
            "locked": False,
            "create_timestamp": created,
        },
    }


def guild_obj(guild: state.Guild, *, approximate_counts: bool = False, online: int = 0) -> JSON:
    """Guild object as `GET /guilds/{id}` returns it; `?with_counts=true` adds the approximate counts.

    `online` is the presence count: the sandbox models no presences but the bot's own.
    """
    system_channel = next(iter(guild.channels), None)
    payload: JSON = {
        "id": str(guild.id),
        "name": guild.name,
        "icon": guild.icon,
        "icon_hash": guild.icon,
        "splash": None,
        "discovery_splash": None,
        "owner_id": str(guild.owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "widget_enabled": False,
        "widget_channel_id": None,
        "verification_level": 1,
        "default_message_notifications": 1,
        "explicit_content_filter": 2,
        "roles": [role_obj(r) for r in guild.roles.values()],
        "emojis": [],
        "features": list(guild.features),
        "mfa_level": 0,
        "application_id": None,
        "system_channel_id": str(system_channel) if system_channel is not None else None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "max_presences": None,
        "max_members": 500000,
        "vanity_url_code": None,
        "description": guild.description,
        "banner": None,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": guild.preferred_locale,
        "public_updates_channel_id": None,
        "max_video_channel_users": 25,
        "max_stage_video_channel_users": 50,
        "nsfw_level": 0,
        "nsfw": False,
        "stickers": [],
        "premium_progress_bar_enabled": False,
        "safety_alerts_channel_id": None,
        "incidents_data": None,
        "region": "deprecated",
        "home_header": None,
        "hub_type": None,
        "latest_onboarding_question_id": None,
    }
    if approximate_counts:
        payload["approximate_member_count"] = len(guild.members)
        payload["approximate_presence_count"] = online
    return payload


def guild_create_obj(
    guild: state.Guild,
    *,
    members: typing.Iterable[state.Member],
    large: bool,
    unavailable_key: bool,
    bot_joined_at: str,
) -> JSON:
    """GUILD_CREATE: a guild object plus the gateway-only fields.

    `unavailable_key` puts `unavailable: false` in the payload, which Discord does for guilds that
    were listed in READY (hikari then fires GuildAvailableEvent rather than GuildJoinEvent).
    """
    payload = guild_obj(guild)
    payload.update(
        {
            "joined_at": bot_joined_at,
            "large": large,
            "member_count": len(guild.members),
            "voice_states": [],
            "members": [orjson.Fragment(member_wire(m)) for m in members],
            "channels": [channel_obj(c, with_guild_id=False) for c in guild.channels.values()],
            "threads": [thread_obj(t) for t in guild.threads.values()],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "activity_instances": [],
            "lazy": True,
            "application_command_counts": {},
        }
    )
    if unavailable_key:
        payload["unavailable"] = False
    return payload


def ready_obj(
    *,
    user: state.User,
    session_id: str,
    resume_gateway_url: str,
    guild_ids: typing.Iterable[int],
    shard: tuple[int, int],
    application_id: int,
    application_flags: int,
) -> JSON:
    """READY: the bot's user, its guilds as unavailable, the session to resume."""
    return {
        "v": 10,
        "user_settings": {},
        "user": own_user_obj(user),
        "session_type": "normal",
        "session_id": session_id,
        "resume_gateway_url": resume_gateway_url,
        "relationships": [],
        "private_channels": [],
        "presences": [],
        "guilds": [{"id": str(g), "unavailable": True} for g in guild_ids],
        "guild_join_requests": [],
        "geo_ordered_rtc_regions": ["rotterdam", "madrid", "milan"],
        "auth": {},
        "application": {"id": str(application_id), "flags": application_flags},
        "shard": list(shard),
        "_trace": ['["gateway-prd-sandbox",{"micros":0}]'],
    }


def message_obj(
    *,
    message_id: int,
    channel_id: int,
    author: state.User,
    content: str,
    timestamp: str,
    guild_id: int | None = None,
    member: JSON | None = None,
    message_type: int = 0,
    flags: int = 0,
    edited_timestamp: str | None = None,
    embeds: list[typing.Any] | None = None,
    components: list[typing.Any] | None = None,
    attachments: list[typing.Any] | None = None,
    mentions: list[JSON] | None = None,
    mention_roles: list[str] | None = None,
    webhook_id: int | None = None,
    application_id: int | None = None,
    interaction_metadata: JSON | None = None,
    tts: bool = False,
) -> JSON:
    """Message object; gateway MESSAGE_CREATE adds `guild_id` and the author's `member`."""
    payload: JSON = {
        "type": message_type,
        "content": content,
        "mentions": mentions or [],
        "mention_roles": mention_roles or [],
        "attachments": attachments or [],
        "embeds": embeds or [],
        "timestamp": timestamp,
        "edited_timestamp": edited_timestamp,
        "flags": flags,
        "components": components or [],
        "id": str(message_id),
        "channel_id": str(channel_id),
        "author": user_obj(author),
        "pinned": False,
        "mention_everyone": False,
        "tts": tts,
    }
    if guild_id is not None:
        payload["guild_id"] = str(guild_id)
    if member is not None:
        payload["member"] = member
    if webhook_id is not None:
        payload["webhook_id"] = str(webhook_id)
    if application_id is not None:
        payload["application_id"] = str(application_id)
    if interaction_metadata is not None:
        payload["interaction_metadata"] = interaction_metadata
    return payload


def application_obj(
    *,
    application_id: int,
    name: str,
    bot: state.User,
    owner: state.User,
    flags: int,
    verify_key: str,
    guild_count: int,
) -> JSON:
    """The application object of `GET /oauth2/applications/@me`."""
    return {
        "id": str(application_id),
        "name": name,
        "icon": None,
        "description": "",
        "summary": "",
        "type": None,
        "hook": True,
        "bot_public": False,
        "bot_require_code_grant": False,
        "verify_key": verify_key,
        "flags": flags,
        "owner": user_obj(owner),
        "team": None,
        "bot": user_obj(bot),
        "redirect_uris": [],
        "interactions_endpoint_url": None,
        "role_connections_verification_url": None,
        "tags": [],
        "install_params": {"scopes": ["bot", "applications.commands"], "permissions": "0"},
        "integration_types_config": {"0": {"oauth2_install_params": None}, "1": {}},
        "is_monetized": False,
        "is_verified": False,
        "is_discoverable": False,
        "approximate_guild_count": guild_count,
        "approximate_user_install_count": 0,
        "approximate_user_authorization_count": 0,
        "event_webhooks_status": 1,
        "event_webhooks_types": [],
        "event_webhooks_url": None,
        "rpc_origins": [],
        "terms_of_service_url": None,
        "privacy_policy_url": None,
        "custom_install_url": None,
        "cover_image": None,
    }
