"""Ground truth held by the sandbox: users, guilds, roles, channels and members, as Discord knows them."""

from __future__ import annotations

__all__ = [
    "DID_REJOIN",
    "UNSET",
    "Channel",
    "GroundTruth",
    "Guild",
    "Member",
    "MemberFields",
    "Role",
    "UnknownEntityError",
    "Unset",
    "User",
]

import bisect
import dataclasses
import datetime
import enum
import logging
import typing

from reconciler.sandbox.history import ChannelHistory

_LOGGER: typing.Final = logging.getLogger(__name__)


class Unset(enum.Enum):
    """Marker for "leave this field as it is" in partial updates."""

    UNSET = enum.auto()


UNSET: typing.Final = Unset.UNSET


class UnknownEntityError(LookupError):
    """An id the sandbox does not know; carries Discord's JSON error code for it."""

    CODES: typing.ClassVar[dict[str, int]] = {
        "application": 10002,
        "channel": 10003,
        "guild": 10004,
        "member": 10007,
        "message": 10008,
        "role": 10011,
        "user": 10013,
        "webhook": 10015,
        "interaction": 10062,
        "command": 10063,
    }

    def __init__(self, kind: str, entity_id: object) -> None:
        super().__init__(f"unknown {kind} {entity_id}")
        self.kind = kind
        self.entity_id = entity_id

    @property
    def code(self) -> int:
        """Discord's JSON error code (`Unknown Guild` is 10004, ...)."""
        return self.CODES.get(self.kind, 0)

    @property
    def discord_message(self) -> str:
        """Discord's message text for this error, e.g. `Unknown Member`."""
        return f"Unknown {self.kind.capitalize()}"


@dataclasses.dataclass(slots=True, eq=False, kw_only=True)
class User:
    """A Discord user; shared by every guild the user is in."""

    id: int
    username: str
    global_name: str | None = None
    avatar: str | None = None
    bot: bool = False


@dataclasses.dataclass(slots=True, eq=False, kw_only=True)
class Member:
    """A user's membership of one guild; `wire` caches its JSON until it changes."""

    user: User
    nick: str | None = None
    joined_at: str
    roles: tuple[int, ...] = ()
    premium_since: str | None = None
    """ISO 8601, as Discord sends it: since when the member boosts (None: not boosting)."""
    communication_disabled_until: str | None = None
    """ISO 8601: until when the member is timed out (None: not timed out)."""
    pending: bool = False
    """Has not passed membership screening yet."""
    flags: int = 0
    """Guild member flags (DID_REJOIN 1<<0, COMPLETED_ONBOARDING 1<<1, BYPASSES_VERIFICATION 1<<2, ...)."""
    avatar: str | None = None
    """The member's guild avatar hash."""
    wire: bytes | None = None


DID_REJOIN: typing.Final = 1 << 0


def _timestamp(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        msg = f"naive datetime {value!r}: give an aware one"
        raise ValueError(msg)
    return value.astimezone(datetime.UTC).isoformat(timespec="microseconds")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MemberFields:
    """Changes to a member's boost, timeout, screening, flags and guild avatar (UNSET: unchanged)."""

    premium_since: datetime.datetime | Unset | None = UNSET
    communication_disabled_until: datetime.datetime | Unset | None = UNSET
    pending: bool | Unset = UNSET
    flags: int | Unset = UNSET
    guild_avatar: str | Unset | None = UNSET

    def apply_to(self, member: Member) -> None:
        """Write the fields that are set onto `member`, as Discord would send them."""
        if not isinstance(self.premium_since, Unset):
            member.premium_since = _timestamp(self.premium_since)
        if not isinstance(self.communication_disabled_until, Unset):
            member.communication_disabled_until = _timestamp(self.communication_disabled_until)
        if not isinstance(self.pending, Unset):
            member.pending = self.pending
        if not isinstance(self.flags, Unset):
            if not 0 <= self.flags < 2**31:
                msg = f"member flags must be a non-negative 31-bit integer, got {self.flags}"
                raise ValueError(msg)
            member.flags = self.flags
        if not isinstance(self.guild_avatar, Unset):
            member.avatar = self.guild_avatar


@dataclasses.dataclass(slots=True, eq=False, kw_only=True)
class Role:
    """A guild role; the @everyone role has the guild's id."""

    id: int
    name: str
    color: int = 0
    hoist: bool = False
    position: int = 0
    permissions: int = 0
    managed: bool = False
    mentionable: bool = False
    bot_id: int | None = None


@dataclasses.dataclass(slots=True, eq=False, kw_only=True)
class Channel:
    """A guild channel (text channels are type 0)."""

    id: int
    guild_id: int
    name: str
    type: int = 0
    position: int = 0
    topic: str | None = None
    parent_id: int | None = None
    nsfw: bool = False
    last_message_id: int | None = None
    bot_can_read: bool = True
    """False: the bot lacks VIEW_CHANNEL / READ_MESSAGE_HISTORY (no events, 403 on its history)."""
    owner_id: int | None = None
    """The thread's creator (threads only)."""
    history: ChannelHistory = dataclasses.field(default_factory=ChannelHistory)


@dataclasses.dataclass(slots=True, eq=False, kw_only=True)
class Guild:
    """A guild with its roles, channels and members (insertion-ordered)."""

    id: int
    name: str
    owner_id: int
    bot_joined_at: str
    roles: dict[int, Role] = dataclasses.field(default_factory=dict[int, Role])
    channels: dict[int, Channel] = dataclasses.field(default_factory=dict[int, Channel])
    threads: dict[int, Channel] = dataclasses.field(default_factory=dict[int, Channel])
    """Active threads (type 11 public, 10 announcement); GUILD_CREATE's `threads`, not its `channels`."""
    members: dict[int, Member] = dataclasses.field(default_factory=dict[int, Member])
    preferred_locale: str = "en-US"
    description: str | None = None
    icon: str | None = None
    features: list[str] = dataclasses.field(default_factory=list[str])
    admin_user_id: int | None = None
    unavailable: bool = False
    sorted_ids_cache: list[int] | None = None
    former_member_ids: set[int] = dataclasses.field(default_factory=set[int])
    """Users who left: Discord sets DID_REJOIN in the flags of a member who comes back."""

    def sorted_member_ids(self) -> list[int]:
        """Member user ids in ascending order (what REST pagination walks)."""
        if self.sorted_ids_cache is None:
            self.sorted_ids_cache = sorted(self.members)
        return self.sorted_ids_cache

    def role_member_counts(self) -> dict[int, int]:
        """Members holding each role, @everyone left out (`GET /guilds/{id}/roles/member-counts`)."""
        counts = dict.fromkeys((role_id for role_id in self.roles if role_id != self.id), 0)
        for member in self.members.values():
            for role_id in member.roles:
                if role_id in counts:
                    counts[role_id] += 1
        return counts

    def member_ids_after(self, after: int, limit: int) -> list[int]:
        """Up to `limit` member ids greater than `after`, ascending."""
        ids = self.sorted_member_ids()
        start = bisect.bisect_right(ids, after)
        return ids[start : start + limit]


class GroundTruth:
    """Every entity the sandbox holds; mutations keep member JSON caches honest."""

    __slots__ = ("channel_guild", "departed_guild_ids", "guilds", "users")

    def __init__(self) -> None:
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channel_guild: dict[int, int] = {}
        self.departed_guild_ids: set[int] = set()
        """Guilds that exist but the bot is no longer in: Discord answers 403 Missing Access for them."""

    # -- lookups -------------------------------------------------------------------------------------

    def guild(self, guild_id: int) -> Guild:
        """The guild, or UnknownEntityError."""
        try:
            return self.guilds[guild_id]
        except KeyError:
            raise UnknownEntityError("guild", guild_id) from None

    def member(self, guild_id: int, user_id: int) -> Member:
        """The member, or UnknownEntityError."""
        try:
            return self.guild(guild_id).members[user_id]
        except KeyError:
            raise UnknownEntityError("member", user_id) from None

    def role(self, guild_id: int, role_id: int) -> Role:
        """The role, or UnknownEntityError."""
        try:
            return self.guild(guild_id).roles[role_id]
        except KeyError:
            raise UnknownEntityError("role", role_id) from None

    def channel(self, channel_id: int) -> Channel:
        """The channel, or UnknownEntityError."""
        try:
            guild = self.guilds[self.channel_guild[channel_id]]
        except KeyError:
            raise UnknownEntityError("channel", channel_id) from None
        channel = guild.channels.get(channel_id) or guild.threads.get(channel_id)
        if channel is None:
            raise UnknownEntityError("channel", channel_id)
        return channel

    def user(self, user_id: int) -> User:
        """The user, or UnknownEntityError."""
        try:
            return self.users[user_id]
        except KeyError:
            raise UnknownEntityError("user", user_id) from None

    # -- guilds --------------------------------------------------------------------------------------

    def add_guild(self, guild: Guild) -> None:
        """Register a guild and its channels; its members' users must already be known."""
        if guild.id in self.guilds:
            msg = f"guild {guild.id} already exists"
            raise ValueError(msg)
        self.guilds[guild.id] = guild
        self.departed_guild_ids.discard(guild.id)
        for channel_id in guild.channels:
            self.channel_guild[channel_id] = guild.id

    def remove_guild(self, guild_id: int) -> Guild:
        """Forget a guild (the bot left it)."""
        guild = self.guild(guild_id)
        del self.guilds[guild_id]
        self.departed_guild_ids.add(guild_id)
        for channel_id in (*guild.channels, *guild.threads):
            self.channel_guild.pop(channel_id, None)
        return guild

    # -- members -------------------------------------------------------------------------------------

    def add_member(
        self, guild_id: int, user: User, *, joined_at: str, nick: str | None, roles: typing.Iterable[int]
    ) -> Member:
        """Add (or re-add) a member; returns the stored member."""
        guild = self.guild(guild_id)
        role_ids = self._checked_roles(guild, roles)
        known = self.users.setdefault(user.id, user)
        member = guild.members.get(user.id)
        if member is None:
            member = Member(user=known, nick=nick, joined_at=joined_at, roles=role_ids)
            if user.id in guild.former_member_ids:
                member.flags |= DID_REJOIN
            guild.members[user.id] = member
            guild.sorted_ids_cache = None
        else:
            member.nick = nick
            member.roles = role_ids
            member.wire = None
        return member

    def update_member(
        self,
        guild_id: int,
        user_id: int,
        *,
        nick: str | Unset | None = UNSET,
        roles: typing.Iterable[int] | Unset = UNSET,
        fields: MemberFields | None = None,
    ) -> Member:
        """Change a member's nick, roles and/or the fields admins ask about."""
        guild = self.guild(guild_id)
        member = self.member(guild_id, user_id)
        if not isinstance(nick, Unset):
            member.nick = nick
        if not isinstance(roles, Unset):
            member.roles = self._checked_roles(guild, roles)
        if fields is not None:
            fields.apply_to(member)
        member.wire = None
        return member

    def update_user(
        self,
        user_id: int,
        *,
        username: str | Unset = UNSET,
        global_name: str | Unset | None = UNSET,
        avatar: str | Unset | None = UNSET,
    ) -> list[int]:
        """Change a user everywhere; returns the ids of the guilds the user is a member of."""
        user = self.user(user_id)
        if not isinstance(username, Unset):
            user.username = username
        if not isinstance(global_name, Unset):
            user.global_name = global_name
        if not isinstance(avatar, Unset):
            user.avatar = avatar
        guild_ids: list[int] = []
        for guild in self.guilds.values():
            member = guild.members.get(user_id)
            if member is not None:
                member.wire = None
                guild_ids.append(guild.id)
        return guild_ids

    def remove_member(self, guild_id: int, user_id: int) -> Member:
        """Remove a member (leave, kick or ban)."""
        guild = self.guild(guild_id)
        try:
            member = guild.members.pop(user_id)
        except KeyError:
            raise UnknownEntityError("member", user_id) from None
        guild.former_member_ids.add(user_id)
        guild.sorted_ids_cache = None
        return member

    # -- roles ---------------------------------------------------------------------------------------

    def add_role(self, guild_id: int, role: Role) -> Role:
        """Add a role to a guild."""
        guild = self.guild(guild_id)
        if role.id in guild.roles:
            msg = f"role {role.id} already exists"
            raise ValueError(msg)
        guild.roles[role.id] = role
        return role

    def delete_role(self, guild_id: int, role_id: int) -> Role:
        """Delete a role and take it off every member (Discord sends no member updates for that)."""
        guild = self.guild(guild_id)
        if role_id == guild_id:
            msg = "the @everyone role cannot be deleted"
            raise ValueError(msg)
        role = self.role(guild_id, role_id)
        del guild.roles[role_id]
        for member in guild.members.values():
            if role_id in member.roles:
                member.roles = tuple(r for r in member.roles if r != role_id)
                member.wire = None
        return role

    @staticmethod
    def _checked_roles(guild: Guild, roles: typing.Iterable[int]) -> tuple[int, ...]:
        role_ids = tuple(dict.fromkeys(int(r) for r in roles if int(r) != guild.id))
        for role_id in role_ids:
            if role_id not in guild.roles:
                raise UnknownEntityError("role", role_id)
        return role_ids
