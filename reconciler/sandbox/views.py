"""Frozen snapshots of the ground truth, handed to tests so they can compare the bot's view with Discord's."""

from __future__ import annotations

__all__ = ["ChannelInfo", "GuildInfo", "MemberInfo", "RoleInfo", "channel_info", "member_info", "role_info"]

import dataclasses
import datetime
import logging
import typing

if typing.TYPE_CHECKING:
    from reconciler.sandbox import state

_LOGGER: typing.Final = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MemberInfo:
    """A member as Discord knows it; `role_ids` excludes @everyone (as in Discord's payloads)."""

    user_id: int
    username: str
    global_name: str | None
    avatar: str | None
    bot: bool
    nick: str | None
    joined_at: datetime.datetime
    role_ids: tuple[int, ...]
    premium_since: datetime.datetime | None = None
    communication_disabled_until: datetime.datetime | None = None
    pending: bool = False
    flags: int = 0
    guild_avatar: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RoleInfo:
    """A role; the @everyone role has the guild's id."""

    id: int
    name: str
    color: int
    hoist: bool
    position: int
    permissions: int
    managed: bool
    mentionable: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChannelInfo:
    """A guild channel."""

    id: int
    name: str
    type: int
    position: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class GuildInfo:
    """A guild summary."""

    id: int
    name: str
    owner_id: int
    admin_user_id: int | None
    member_count: int
    role_ids: tuple[int, ...]
    channel_ids: tuple[int, ...]
    unavailable: bool


def member_info(member: state.Member) -> MemberInfo:
    """Snapshot of a member."""
    user = member.user
    return MemberInfo(
        user_id=user.id,
        username=user.username,
        global_name=user.global_name,
        avatar=user.avatar,
        bot=user.bot,
        nick=member.nick,
        joined_at=datetime.datetime.fromisoformat(member.joined_at),
        role_ids=member.roles,
        premium_since=_time(member.premium_since),
        communication_disabled_until=_time(member.communication_disabled_until),
        pending=member.pending,
        flags=member.flags,
        guild_avatar=member.avatar,
    )


def _time(value: str | None) -> datetime.datetime | None:
    return None if value is None else datetime.datetime.fromisoformat(value)


def role_info(role: state.Role) -> RoleInfo:
    """Snapshot of a role."""
    return RoleInfo(
        id=role.id,
        name=role.name,
        color=role.color,
        hoist=role.hoist,
        position=role.position,
        permissions=role.permissions,
        managed=role.managed,
        mentionable=role.mentionable,
    )


def channel_info(channel: state.Channel) -> ChannelInfo:
    """Snapshot of a channel."""
    return ChannelInfo(id=channel.id, name=channel.name, type=channel.type, position=channel.position)


def guild_info(guild: state.Guild) -> GuildInfo:
    """Snapshot of a guild."""
    return GuildInfo(
        id=guild.id,
        name=guild.name,
        owner_id=guild.owner_id,
        admin_user_id=guild.admin_user_id,
        member_count=len(guild.members),
        role_ids=tuple(guild.roles),
        channel_ids=tuple(guild.channels),
        unavailable=guild.unavailable,
    )
