"""Discord's own counts of a guild's members and role holders, read over REST for the count audit.

Two calls whatever the guild's size: `GET /guilds/{id}?with_counts=true` (hikari's `fetch_guild` always
asks for the counts) and `GET /guilds/{id}/roles/member-counts` (hikari's `fetch_role_member_counts`).
Both go through hikari's REST client, so its per-route buckets and 429 handling apply.
"""

from __future__ import annotations

__all__ = ["DiscordCountReader"]

import logging
import typing

from reconciler.domain.counts import GuildCounts

if typing.TYPE_CHECKING:
    import hikari

_LOGGER: typing.Final = logging.getLogger(__name__)


class DiscordCountReader:
    """Reads what Discord counts (the engine's `DiscordCounts`); hikari's errors propagate as they are."""

    def __init__(self, rest: hikari.api.RESTClient) -> None:
        self._rest = rest

    async def fetch_counts(self, guild_id: int) -> GuildCounts:
        guild = await self._rest.fetch_guild(guild_id)
        if guild.approximate_member_count is None:
            msg = f"Discord sent guild {guild_id} without approximate_member_count"
            raise LookupError(msg)
        held = await self._rest.fetch_role_member_counts(guild_id)
        # Discord leaves @everyone out; drop it anyway should it ever be sent, as the replica leaves it out.
        return GuildCounts(
            members=guild.approximate_member_count,
            role_members={int(role_id): count for role_id, count in held.items() if int(role_id) != guild_id},
        )
