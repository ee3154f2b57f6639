"""Discord permission bits and the base-permission rule the sandbox applies to members."""

from __future__ import annotations

__all__ = [
    "ADMINISTRATOR",
    "ALL_PERMISSIONS",
    "BOT_ROLE_PERMISSIONS",
    "DEFAULT_EVERYONE",
    "MANAGE_GUILD",
    "MANAGE_ROLES",
    "base_permissions",
]

import logging
import typing

if typing.TYPE_CHECKING:
    from reconciler.sandbox import state

_LOGGER: typing.Final = logging.getLogger(__name__)

CREATE_INSTANT_INVITE: typing.Final = 1 << 0
KICK_MEMBERS: typing.Final = 1 << 1
BAN_MEMBERS: typing.Final = 1 << 2
ADMINISTRATOR: typing.Final = 1 << 3
MANAGE_CHANNELS: typing.Final = 1 << 4
MANAGE_GUILD: typing.Final = 1 << 5
ADD_REACTIONS: typing.Final = 1 << 6
VIEW_AUDIT_LOG: typing.Final = 1 << 7
STREAM: typing.Final = 1 << 9
VIEW_CHANNEL: typing.Final = 1 << 10
SEND_MESSAGES: typing.Final = 1 << 11
EMBED_LINKS: typing.Final = 1 << 14
ATTACH_FILES: typing.Final = 1 << 15
READ_MESSAGE_HISTORY: typing.Final = 1 << 16
MENTION_EVERYONE: typing.Final = 1 << 17
USE_EXTERNAL_EMOJIS: typing.Final = 1 << 18
CONNECT: typing.Final = 1 << 20
SPEAK: typing.Final = 1 << 21
CHANGE_NICKNAME: typing.Final = 1 << 26
MANAGE_NICKNAMES: typing.Final = 1 << 27
MANAGE_ROLES: typing.Final = 1 << 28
USE_APPLICATION_COMMANDS: typing.Final = 1 << 31
MODERATE_MEMBERS: typing.Final = 1 << 40

ALL_PERMISSIONS: typing.Final = (1 << 51) - 1
"""Every bit Discord defines today; what an owner or administrator is granted."""

DEFAULT_EVERYONE: typing.Final = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | STREAM
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | MENTION_EVERYONE
    | USE_EXTERNAL_EMOJIS
    | CONNECT
    | SPEAK
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
)
"""What Discord gives @everyone in a new guild."""

BOT_ROLE_PERMISSIONS: typing.Final = (
    VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY | USE_APPLICATION_COMMANDS
)


def base_permissions(guild: state.Guild, member: state.Member) -> int:
    """Guild-level permissions of a member: owner and administrators get everything."""
    if member.user.id == guild.owner_id:
        return ALL_PERMISSIONS
    everyone = guild.roles.get(guild.id)
    value = everyone.permissions if everyone is not None else 0
    for role_id in member.roles:
        role = guild.roles.get(role_id)
        if role is not None:
            value |= role.permissions
    if value & ADMINISTRATOR:
        return ALL_PERMISSIONS
    return value
