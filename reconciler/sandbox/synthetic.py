"""Deterministic synthetic guilds: realistic names, role spreads and join dates from a seed."""

from __future__ import annotations

__all__ = ["GuildSpec", "generate_guild"]

import dataclasses
import logging
import random
import typing

from reconciler.sandbox import ids, payloads, permissions, state

_LOGGER: typing.Final = logging.getLogger(__name__)

_REFERENCE_MS: typing.Final = 1_735_689_600_000  # 2025-01-01: "now" for generated data, so seeds replay
_GUILD_MIN_MS: typing.Final = 1_546_300_800_000  # 2019-01-01
_USER_MIN_MS: typing.Final = 1_451_606_400_000  # 2016-01-01
_DAY_MS: typing.Final = 86_400_000

_FIRST_NAMES: typing.Final = (
    "alex", "amelia", "ana", "arjun", "ben", "camille", "chen", "chloe", "daniel", "diego", "elena", "emma",
    "farah", "felix", "grace", "hana", "hugo", "ines", "ivan", "jade", "jonas", "julia", "kai", "kenji",
    "lara", "leo", "lina", "lucas", "maya", "mateo", "mila", "nadia", "noah", "nora", "olga", "omar",
    "paula", "priya", "quinn", "rafael", "rosa", "sam", "sara", "sofia", "tariq", "theo", "uma", "victor",
    "wen", "yara", "yusuf", "zoe",
)  # fmt: skip
_LAST_NAMES: typing.Final = (
    "almeida", "berg", "costa", "dubois", "evans", "fischer", "garcia", "hansen", "ito", "jensen", "kim",
    "kowalski", "lopez", "muller", "novak", "okafor", "petrov", "quist", "rossi", "silva", "tanaka",
    "umar", "varga", "wagner", "xu", "yilmaz", "zhang",
)  # fmt: skip
_WORDS: typing.Final = (
    "amber", "arcade", "astro", "blaze", "bolt", "byte", "cactus", "cipher", "cloud", "comet", "coral",
    "cosmic", "crimson", "dusk", "echo", "ember", "falcon", "frost", "ghost", "glitch", "hollow", "indigo",
    "jade", "jolly", "lunar", "maple", "mint", "neon", "nova", "onyx", "orbit", "pixel", "quartz", "raven",
    "rogue", "sage", "shadow", "solar", "sonic", "spark", "storm", "tidal", "ultra", "velvet", "vortex",
    "willow", "zenith",
)  # fmt: skip
_ROLE_NAMES: typing.Final = (
    "Moderator", "Member", "Veteran", "Artist", "Developer", "Gamer", "Musician", "Helper", "Event Team",
    "Writer", "Streamer", "Photographer", "Translator", "Mentor", "Newcomer", "Tester", "Designer",
    "Organizer", "Historian", "Explorer",
)  # fmt: skip
_CHANNEL_NAMES: typing.Final = (
    "general", "announcements", "off-topic", "help", "showcase", "random", "introductions", "events",
    "feedback", "memes",
)  # fmt: skip
_GUILD_WORDS: typing.Final = ("Guild", "Hangout", "Club", "Collective", "Lounge", "Society", "Hub")
_COLORS: typing.Final = (0x1ABC9C, 0x2ECC71, 0x3498DB, 0x9B59B6, 0xE91E63, 0xF1C40F, 0xE67E22, 0xE74C3C)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class GuildSpec:
    """What to generate; the same spec and the same taken ids give the same guild."""

    name: str | None = None
    members: int = 100
    roles: int = 12
    channels: int = 3
    seed: int = 0
    guild_id: int | None = None
    shard: tuple[int, int] | None = None


def _snowflake_in(rng: random.Random, low_ms: int, high_ms: int) -> int:
    return ids.snowflake(
        rng.randrange(low_ms, high_ms),
        worker=rng.randrange(32),
        process=rng.randrange(32),
        increment=rng.randrange(4096),
    )


def _guild_id(rng: random.Random, spec: GuildSpec, taken: typing.Container[int]) -> int:
    if spec.guild_id is not None:
        return spec.guild_id
    shard_id, shard_count = spec.shard or (0, 1)
    if not 0 <= shard_id < shard_count:
        msg = f"shard {shard_id} is not in 0..{shard_count - 1}"
        raise ValueError(msg)
    ms = rng.randrange(_GUILD_MIN_MS, _REFERENCE_MS - 365 * _DAY_MS)
    ms += (shard_id - ids.shard_of(ids.snowflake(ms), shard_count)) % shard_count
    candidate = ids.snowflake(ms)
    while candidate in taken:
        ms += shard_count
        candidate = ids.snowflake(ms)
    return candidate


def _username(rng: random.Random, used: set[str]) -> str:
    shape = rng.random()
    if shape < 0.4:
        base = f"{rng.choice(_FIRST_NAMES)}{rng.choice(('', '_', '.'))}{rng.choice(_LAST_NAMES)}"
    elif shape < 0.75:
        base = f"{rng.choice(_WORDS)}{rng.choice(_WORDS)}"
    else:
        base = f"{rng.choice(_FIRST_NAMES)}{rng.randrange(1, 10_000)}"
    name = base
    while name in used:
        name = f"{base}{rng.randrange(10, 100_000)}"
    used.add(name)
    return name


def _global_name(rng: random.Random, username: str) -> str | None:
    roll = rng.random()
    if roll < 0.2:
        return None
    if roll < 0.6:
        return (
            username.split("_", maxsplit=1)[0].split(".", maxsplit=1)[0].rstrip("0123456789").capitalize() or username
        )
    return f"{rng.choice(_FIRST_NAMES).capitalize()} {rng.choice(_LAST_NAMES).capitalize()}"


def _avatar(rng: random.Random) -> str | None:
    roll = rng.random()
    if roll < 0.25:
        return None
    digest = f"{rng.getrandbits(128):032x}"
    return f"a_{digest}" if roll > 0.95 else digest


def _roles(
    rng: random.Random, guild_id: int, count: int, bot: state.User, start_ms: int
) -> tuple[dict[int, state.Role], int, list[int]]:
    """@everyone, the bot's managed role, an Admin role with Manage Guild, then named roles."""
    roles: dict[int, state.Role] = {
        guild_id: state.Role(id=guild_id, name="@everyone", permissions=permissions.DEFAULT_EVERYONE)
    }
    increment = 0

    def next_id() -> int:
        nonlocal increment
        increment += 1
        return ids.snowflake(start_ms + increment, worker=1, process=2, increment=increment % 4096)

    admin_id = next_id()
    names = list(_ROLE_NAMES)
    rng.shuffle(names)
    assignable: list[int] = [admin_id]
    roles[admin_id] = state.Role(
        id=admin_id,
        name="Admin",
        color=0xE74C3C,
        hoist=True,
        permissions=permissions.MANAGE_GUILD | permissions.MANAGE_ROLES | permissions.KICK_MEMBERS,
        mentionable=False,
    )
    for index in range(max(0, count - 3)):
        role_id = next_id()
        name = names[index % len(names)] if index < len(names) else f"{names[index % len(names)]} {index}"
        roles[role_id] = state.Role(
            id=role_id,
            name=name,
            color=rng.choice(_COLORS) if rng.random() < 0.7 else 0,
            hoist=rng.random() < 0.2,
            mentionable=rng.random() < 0.5,
        )
        assignable.append(role_id)
    if count >= 2:
        bot_role_id = next_id()
        roles[bot_role_id] = state.Role(
            id=bot_role_id,
            name=bot.username,
            permissions=permissions.BOT_ROLE_PERMISSIONS,
            managed=True,
            bot_id=bot.id,
        )
    ordered = [r for r in roles.values() if r.id != guild_id]
    for position, role in enumerate(reversed(ordered), start=1):
        role.position = position
    return roles, admin_id, assignable


def generate_guild(
    spec: GuildSpec, *, bot: state.User, taken_guild_ids: typing.Container[int], taken_user_ids: set[int]
) -> state.Guild:
    """Build a guild with `spec.members` members (owner, an admin, the bot, then synthetic users).

    Users are created fresh; `taken_user_ids` is updated with every new id so guilds never share users
    by accident.
    """
    if spec.members < 2:
        msg = "a guild needs at least 2 members (its owner and the bot)"
        raise ValueError(msg)
    if spec.roles < 1:
        msg = "a guild has at least the @everyone role"
        raise ValueError(msg)
    rng = random.Random(spec.seed)
    guild_id = _guild_id(rng, spec, taken_guild_ids)
    created_ms = ids.snowflake_ms(guild_id)
    roles, admin_role_id, assignable = _roles(rng, guild_id, spec.roles, bot, created_ms)
    bot_role_ids = tuple(r.id for r in roles.values() if r.bot_id == bot.id)

    channels: dict[int, state.Channel] = {}
    for index in range(spec.channels):
        channel_id = ids.snowflake(created_ms + 1000 + index, worker=1, process=3, increment=index)
        name = _CHANNEL_NAMES[index] if index < len(_CHANNEL_NAMES) else f"channel-{index}"
        channels[channel_id] = state.Channel(
            id=channel_id, guild_id=guild_id, name=name, position=index, topic=f"All about {name}"
        )

    name = spec.name or f"{rng.choice(_WORDS).capitalize()} {rng.choice(_GUILD_WORDS)}"
    span_ms = max(_DAY_MS, _REFERENCE_MS - created_ms)
    used_names: set[str] = set()
    members: dict[int, state.Member] = {}
    role_pool = assignable[1:]

    def new_user(*, is_bot: bool) -> state.User:
        user_id = _snowflake_in(rng, _USER_MIN_MS, created_ms + span_ms)
        while user_id in taken_user_ids:
            user_id = _snowflake_in(rng, _USER_MIN_MS, created_ms + span_ms)
        taken_user_ids.add(user_id)
        username = _username(rng, used_names)
        if is_bot:
            username = f"{username}bot"
        return state.User(
            id=user_id,
            username=username,
            global_name=None if is_bot else _global_name(rng, username),
            avatar=_avatar(rng),
            bot=is_bot,
        )

    def joined(offset_fraction: float) -> str:
        return payloads.iso_timestamp(created_ms + int(span_ms * offset_fraction))

    owner = new_user(is_bot=False)
    members[owner.id] = state.Member(user=owner, joined_at=joined(0.0), roles=())
    admin_user_id: int | None = None
    humans = spec.members - 2
    if humans > 0:
        admin = new_user(is_bot=False)
        admin_user_id = admin.id
        members[admin.id] = state.Member(user=admin, joined_at=joined(0.01), roles=(admin_role_id,), nick="Head Admin")
        humans -= 1
    for _ in range(humans):
        is_bot = rng.random() < 0.01
        user = new_user(is_bot=is_bot)
        role_count = min(len(role_pool), rng.choice((0, 1, 2, 2, 3, 3, 3, 4, 4, 5, 6)))
        member_roles = tuple(rng.sample(role_pool, role_count)) if role_count else ()
        nick = f"{rng.choice(_WORDS).capitalize()} {user.username[:8]}" if rng.random() < 0.15 else None
        members[user.id] = state.Member(user=user, joined_at=joined(rng.random() ** 0.7), roles=member_roles, nick=nick)
    members[bot.id] = state.Member(user=bot, joined_at=joined(0.5), roles=bot_role_ids)

    return state.Guild(
        id=guild_id,
        name=name,
        owner_id=owner.id,
        bot_joined_at=members[bot.id].joined_at,
        roles=roles,
        channels=channels,
        members=members,
        admin_user_id=admin_user_id,
        features=["COMMUNITY", "NEWS"] if spec.members > 1000 else [],
        description=f"A synthetic guild (seed {spec.seed})",
    )
