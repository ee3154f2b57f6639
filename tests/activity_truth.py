"""What the sandbox's history says should be counted, and what the database counted, side by side."""

from __future__ import annotations

__all__ = ["Counted", "counted_in_database", "posted_in_sandbox"]

import collections
import datetime
import typing

import attrs

from reconciler.domain import snowflake_time

if typing.TYPE_CHECKING:
    from database_view import DatabaseView

    from reconciler.sandbox import DiscordSandbox


@attrs.frozen
class Counted:
    """Messages per (member, UTC day) and per channel."""

    by_member_day: dict[tuple[int, str], int]
    by_channel: dict[int, int]

    @property
    def total(self) -> int:
        return sum(self.by_member_day.values())


def posted_in_sandbox(sandbox: DiscordSandbox, guild_id: int) -> Counted:
    """Every message in the guild's channels and threads, webhooks excepted (as the bot counts)."""
    guild = sandbox.truth.guild(guild_id)
    by_member_day: collections.Counter[tuple[int, str]] = collections.Counter()
    by_channel: collections.Counter[int] = collections.Counter()
    for channel in (*guild.channels.values(), *guild.threads.values()):
        for message in channel.history.page(limit=10**9):
            if message.webhook_id is not None:
                continue
            day = snowflake_time(message.id).date().isoformat()
            by_member_day[message.author_id, day] += 1
            by_channel[channel.id] += 1
    return Counted(dict(by_member_day), dict(by_channel))


def _day(value: datetime.date | str) -> str:
    return value.isoformat() if isinstance(value, datetime.date) else str(value)[:10]


async def counted_in_database(view: DatabaseView, guild_id: int) -> Counted:
    members = await view.rows("SELECT user_id, day, messages FROM message_activity WHERE guild_id = :g", g=guild_id)
    channels = await view.rows(
        "SELECT channel_id, SUM(messages) AS n FROM channel_activity WHERE guild_id = :g GROUP BY channel_id",
        g=guild_id,
    )
    return Counted(
        {(int(r["user_id"]), _day(r["day"])): int(r["messages"]) for r in members},
        {int(r["channel_id"]): int(r["n"]) for r in channels},
    )
