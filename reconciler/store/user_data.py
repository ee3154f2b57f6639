"""One person's data: export it, erase it on request, and let old history and old names expire.

Discord's Developer Policy asks that a user's data be deleted on request; Red-DiscordBot gives each
cog an API for it. Here every table that holds something about a user is listed once
(`USER_TABLES`), so export and forget cannot drift apart; docs/privacy.md lists the same fields.
"""

from __future__ import annotations

__all__ = ["USER_TABLES", "erase_left_names", "export_user", "forget_user", "prune_events"]

import datetime
import logging
import typing

import sqlalchemy as sa

from reconciler.domain.history import NAME_KINDS, EventKind, EventSource
from reconciler.store import tables as t

if typing.TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

_LOGGER: typing.Final = logging.getLogger(__name__)

USER_TABLES: typing.Final[tuple[tuple[sa.Table, sa.Column[int]], ...]] = (
    (t.users, t.users.c.id),
    (t.members, t.members.c.user_id),
    (t.member_roles, t.member_roles.c.user_id),
    (t.message_activity, t.message_activity.c.user_id),
    (t.member_events, t.member_events.c.user_id),
    (t.forgotten_users, t.forgotten_users.c.user_id),
    (t.sync_runs, t.sync_runs.c.requested_by),
)
"""Every table with a column naming a user, and that column."""

_NAME_KIND_VALUES: typing.Final = sorted(kind.value for kind in NAME_KINDS)


def _plain(value: object) -> object:
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return value


async def export_user(conn: AsyncConnection, user_id: int) -> dict[str, list[dict[str, typing.Any]]] | None:
    """Every row naming `user_id`, table by table, as JSON-ready values; None when no table names the user."""
    found: dict[str, list[dict[str, typing.Any]]] = {}
    for table, column in USER_TABLES:
        order = list(table.primary_key.columns)
        result = await conn.execute(sa.select(table).where(column == user_id).order_by(*order))
        found[table.name] = [{key: _plain(value) for key, value in row.items()} for row in result.mappings()]
    if not any(found[table.name] for table, _ in USER_TABLES if table is not t.sync_runs):
        return None
    return found


async def forget_user(conn: AsyncConnection, user_id: int, *, now: datetime.datetime) -> int | None:
    """Erase the user's names, nicknames, avatars and history values; record it; keep id-only rows.

    Returns how many memberships the user has (kept, so that counts and coverage stay right), or
    None when no table knows the user. Runs in the caller's transaction.
    """
    known = await export_user(conn, user_id)
    if known is None:
        return None
    await conn.execute(
        sa.update(t.users)
        .where(t.users.c.id == user_id)
        .values(username="", global_name=None, avatar_hash=None, updated_at=now)
    )
    # Fingerprint 0 matches no state: the next reconcile compares the row, finds it equal to the
    # redacted state the engine now hands over, and stores that state's fingerprint.
    await conn.execute(
        sa.update(t.members)
        .where(t.members.c.user_id == user_id)
        .values(nickname=None, guild_avatar_hash=None, fingerprint=0, updated_at=now)
    )
    await conn.execute(
        sa.update(t.member_events).where(t.member_events.c.user_id == user_id).values(old_value=None, new_value=None)
    )
    if not known["forgotten_users"]:
        await conn.execute(sa.insert(t.forgotten_users).values(user_id=user_id, forgotten_at=now))
    guild_ids = sorted({row["guild_id"] for row in known["members"]})
    if guild_ids:
        await conn.execute(
            sa.insert(t.member_events),
            [
                {
                    "guild_id": guild_id,
                    "user_id": user_id,
                    "kind": EventKind.FORGOTTEN.value,
                    "observed_at": now,
                    "source": EventSource.COMMAND.value,
                }
                for guild_id in guild_ids
            ],
        )
    _LOGGER.info("user forgotten", extra={"user_id": user_id, "memberships": len(guild_ids)})
    return len(guild_ids)


async def prune_events(conn: AsyncConnection, *, before: datetime.datetime) -> int:
    """Delete history observed before `before`."""
    result = await conn.execute(sa.delete(t.member_events).where(t.member_events.c.observed_at < before))
    return result.rowcount


async def erase_left_names(conn: AsyncConnection, *, left_before: datetime.datetime, now: datetime.datetime) -> int:
    """Erase names of members who left before `left_before`: member rows, their name events, and users
    who are in no guild any more. The number of rows (member and user rows) that still had a name."""
    m, e, u = t.members, t.member_events, t.users
    cutoff = sa.bindparam("cutoff", left_before, type_=t.UtcDateTime())
    departed = sa.and_(m.c.status == "left", m.c.left_at < cutoff)
    pairs = (
        await conn.execute(
            sa.select(m.c.guild_id, m.c.user_id).where(
                departed, sa.or_(m.c.nickname.is_not(None), m.c.guild_avatar_hash.is_not(None))
            )
        )
    ).all()
    if pairs:
        await conn.execute(
            sa.update(m)
            .where(departed, sa.or_(m.c.nickname.is_not(None), m.c.guild_avatar_hash.is_not(None)))
            .values(nickname=None, guild_avatar_hash=None, updated_at=now)
        )
    names = sa.and_(e.c.kind.in_(_NAME_KIND_VALUES), sa.or_(e.c.old_value.is_not(None), e.c.new_value.is_not(None)))
    stale_events = sa.exists().where(m.c.guild_id == e.c.guild_id, m.c.user_id == e.c.user_id, departed)
    await conn.execute(sa.update(e).where(names, stale_events).values(old_value=None, new_value=None))
    gone_everywhere = sa.and_(
        sa.exists().where(m.c.user_id == u.c.id, departed),
        ~sa.exists().where(m.c.user_id == u.c.id, sa.or_(m.c.status != "left", m.c.left_at >= cutoff)),
    )
    users = await conn.execute(
        sa.update(u)
        .where(gone_everywhere, sa.or_(u.c.username != "", u.c.global_name.is_not(None), u.c.avatar_hash.is_not(None)))
        .values(username="", global_name=None, avatar_hash=None, updated_at=now)
    )
    return len(pairs) + users.rowcount
