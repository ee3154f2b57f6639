"""The SQL of exactly-once activity: counts and counted sets written together, read back per guild."""

from __future__ import annotations

__all__ = ["ActivityTables"]

import datetime
import logging
import typing

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from reconciler.domain import (
    ChannelCounted,
    CountedIds,
    EventKind,
    EventSource,
    MemberStatus,
    merge_activity,
    merge_channel_activity,
)
from reconciler.domain.counted import format_ranges, parse_ranges
from reconciler.store import tables as t

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sqlalchemy.ext.asyncio import AsyncConnection

    from reconciler.domain import ActivityBatch, ActivityDelta, CountedUpdate

_LOGGER: typing.Final = logging.getLogger(__name__)


def _utc(value: datetime.datetime) -> datetime.datetime:
    return value.astimezone(datetime.UTC)


class ActivityTables:
    """Writes and reads `message_activity`, `channel_activity`, `activity_channels` and `activity_gaps`."""

    def __init__(self, *, dialect: str, clock: Callable[[], datetime.datetime]) -> None:
        self._dialect = dialect
        self._clock = clock

    def _insert(self, table: sa.Table) -> typing.Any:
        return (sqlite_dialect.insert if self._dialect == "sqlite" else pg_dialect.insert)(table)

    async def write(self, conn: AsyncConnection, batch: ActivityBatch) -> None:
        """Everything of one flush, inside the caller's transaction."""
        await self._write_members(conn, batch.members)
        channels = merge_channel_activity(batch.channels)
        if channels:
            ca = t.channel_activity
            statement = self._insert(ca)
            statement = statement.on_conflict_do_update(
                index_elements=[ca.c.guild_id, ca.c.channel_id, ca.c.day],
                set_={"messages": ca.c.messages + statement.excluded.messages},
            )
            await conn.execute(
                statement,
                [
                    {"guild_id": d.guild_id, "channel_id": d.channel_id, "day": d.day, "messages": d.messages}
                    for d in channels
                ],
            )
        if batch.counted:
            await self._merge_counted(conn, batch.counted)
        if batch.gaps:
            now = self._clock()
            await conn.execute(
                sa.insert(t.activity_gaps),
                [
                    {
                        "guild_id": g.guild_id,
                        "channel_id": g.channel_id,
                        "after_id": g.after,
                        "before_id": g.before,
                        "reason": g.reason,
                        "recorded_at": now,
                    }
                    for g in batch.gaps
                ],
            )

    async def _write_members(self, conn: AsyncConnection, rows: Sequence[ActivityDelta]) -> None:
        merged = merge_activity(rows)
        if not merged:
            return
        activity = t.message_activity
        counts = self._insert(activity)
        counts = counts.on_conflict_do_update(
            index_elements=[activity.c.guild_id, activity.c.user_id, activity.c.day],
            set_={"messages": activity.c.messages + counts.excluded.messages},
        )
        last_seen: dict[tuple[int, int], datetime.datetime] = {}
        for delta in merged:
            key = (delta.guild_id, delta.user_id)
            seen = _utc(delta.last_seen_at)
            if key not in last_seen or seen > last_seen[key]:
                last_seen[key] = seen
        m = t.members
        seen_at = sa.bindparam("seen_at", type_=t.UtcDateTime())
        touch = (
            sa.update(m)
            .where(m.c.guild_id == sa.bindparam("g"), m.c.user_id == sa.bindparam("u"))
            .values(
                last_seen_at=sa.case(
                    (sa.or_(m.c.last_seen_at.is_(None), m.c.last_seen_at < seen_at), seen_at),
                    else_=m.c.last_seen_at,
                ),
                status=sa.case(
                    (m.c.status == MemberStatus.INACTIVE.value, MemberStatus.ACTIVE.value), else_=m.c.status
                ),
            )
        )
        # An inactive member who writes becomes active again: its event first, while the row still says so.
        woken = sa.insert(t.member_events).from_select(
            ["guild_id", "user_id", "kind", "observed_at", "source"],
            sa.select(
                m.c.guild_id,
                m.c.user_id,
                sa.literal(EventKind.BECAME_ACTIVE.value),
                sa.bindparam("seen_at", type_=t.UtcDateTime()),
                sa.literal(EventSource.GATEWAY.value),
            ).where(
                m.c.guild_id == sa.bindparam("g"),
                m.c.user_id == sa.bindparam("u"),
                m.c.status == MemberStatus.INACTIVE.value,
            ),
        )
        touched = [{"g": guild_id, "u": user_id, "seen_at": at} for (guild_id, user_id), at in last_seen.items()]
        await conn.execute(
            counts,
            [{"guild_id": d.guild_id, "user_id": d.user_id, "day": d.day, "messages": d.messages} for d in merged],
        )
        await conn.execute(woken, touched)
        await conn.execute(touch, touched)

    async def _merge_counted(self, conn: AsyncConnection, updates: Sequence[CountedUpdate]) -> None:
        # Read-merge-write in the flush's transaction (rows locked on PostgreSQL; SQLite's write
        # transaction is exclusive already): the stored set only ever grows.
        ac = t.activity_channels
        wanted: dict[tuple[int, int], CountedIds] = {}
        for update in updates:
            key = (update.guild_id, update.channel_id)
            current = wanted.get(key)
            if current is None:
                wanted[key] = update.counted.copy()
            else:
                current.merge(update.counted)
        query = sa.select(ac.c.guild_id, ac.c.channel_id, ac.c.watermark, ac.c.counted_ranges).where(
            sa.tuple_(ac.c.guild_id, ac.c.channel_id).in_(list(wanted))
        )
        if self._dialect == "postgresql":
            query = query.with_for_update()
        stored = {
            (row.guild_id, row.channel_id): CountedIds(row.watermark, parse_ranges(row.counted_ranges))
            for row in await conn.execute(query)
        }
        now = self._clock()
        rows: list[dict[str, typing.Any]] = []
        for (guild_id, channel_id), counted in wanted.items():
            merged = stored.get((guild_id, channel_id))
            if merged is None:
                merged = counted
            else:
                merged.merge(counted)
            rows.append(
                {
                    "guild_id": guild_id,
                    "channel_id": channel_id,
                    "watermark": merged.watermark,
                    "counted_ranges": format_ranges(merged.ranges),
                    "tracked_since": now,
                    "updated_at": now,
                }
            )
        statement = self._insert(ac)
        statement = statement.on_conflict_do_update(
            index_elements=[ac.c.guild_id, ac.c.channel_id],
            set_={
                "watermark": statement.excluded.watermark,
                "counted_ranges": statement.excluded.counted_ranges,
                "updated_at": statement.excluded.updated_at,
            },
        )
        await conn.execute(statement, rows)

    async def load_counted(self, conn: AsyncConnection, guild_id: int) -> dict[int, ChannelCounted]:
        ac = t.activity_channels
        result = await conn.execute(sa.select(ac).where(ac.c.guild_id == guild_id))
        return {
            row.channel_id: ChannelCounted(
                guild_id=row.guild_id,
                channel_id=row.channel_id,
                counted=CountedIds(row.watermark, parse_ranges(row.counted_ranges)),
                tracked_since=row.tracked_since,
                forbidden_at=row.forbidden_at,
            )
            for row in result
        }

    async def set_access(
        self, conn: AsyncConnection, guild_id: int, channel_id: int, *, forbidden: bool, watermark_if_new: int
    ) -> None:
        ac = t.activity_channels
        now = self._clock()
        forbidden_at = now if forbidden else None
        statement = self._insert(ac).values(
            guild_id=guild_id,
            channel_id=channel_id,
            watermark=watermark_if_new,
            counted_ranges="",
            tracked_since=now,
            forbidden_at=forbidden_at,
            updated_at=now,
        )
        statement = statement.on_conflict_do_update(
            index_elements=[ac.c.guild_id, ac.c.channel_id],
            set_={"forbidden_at": statement.excluded.forbidden_at, "updated_at": statement.excluded.updated_at},
        )
        await conn.execute(statement)

    async def top_channels(
        self, conn: AsyncConnection, guild_id: int, *, since: datetime.date, until: datetime.date, limit: int
    ) -> list[tuple[int, int]]:
        ca = t.channel_activity
        total = sa.func.sum(ca.c.messages).label("total")
        result = await conn.execute(
            sa.select(ca.c.channel_id, total)
            .where(ca.c.guild_id == guild_id, ca.c.day >= since, ca.c.day <= until)
            .group_by(ca.c.channel_id)
            .order_by(total.desc(), ca.c.channel_id)
            .limit(limit)
        )
        return [(int(channel_id), int(messages)) for channel_id, messages in result.all()]

    async def gap_count(self, conn: AsyncConnection, guild_id: int) -> int:
        g = t.activity_gaps
        result = await conn.execute(sa.select(sa.func.count()).select_from(g).where(g.c.guild_id == guild_id))
        return int(result.scalar_one())
