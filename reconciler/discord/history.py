"""Discord's message history through hikari, for the activity backfill (hikari waits out rate limits)."""

from __future__ import annotations

__all__ = ["HikariHistory"]

import logging
import typing

import hikari

from reconciler.activity.backfill import PAGE_SIZE, ChannelHead, FetchedMessage, HistoryForbiddenError

if typing.TYPE_CHECKING:
    from collections.abc import Sequence

_LOGGER: typing.Final = logging.getLogger(__name__)

# Text and announcement channels; their threads come from the active-threads route.
_COUNTED_TYPES: typing.Final = frozenset({hikari.ChannelType.GUILD_TEXT, hikari.ChannelType.GUILD_NEWS})


def _head(channel: hikari.PermissibleGuildChannel | hikari.GuildThreadChannel) -> ChannelHead | None:
    last = getattr(channel, "last_message_id", None)
    if not isinstance(last, int) and last is not None:
        return None
    return ChannelHead(channel_id=int(channel.id), last_message_id=int(last) if last is not None else None)


class HikariHistory:
    """The `MessageHistory` the backfill reads: channels from the cache, threads and pages from REST."""

    def __init__(self, bot: hikari.GatewayBot) -> None:
        self._bot = bot

    async def channels(self, guild_id: int) -> Sequence[ChannelHead]:
        heads: list[ChannelHead] = []
        for channel in self._bot.cache.get_guild_channels_view_for_guild(guild_id).values():
            if channel.type in _COUNTED_TYPES:
                head = _head(channel)
                if head is not None:
                    heads.append(head)
        threads: Sequence[hikari.GuildThreadChannel] = ()
        try:
            threads = await self._bot.rest.fetch_active_threads(guild_id)
        except hikari.ForbiddenError:
            _LOGGER.warning("active threads not readable; threads not backfilled", extra={"guild_id": guild_id})
        for thread in threads:
            head = _head(thread)
            if head is not None:
                heads.append(head)
        return heads

    async def page_after(self, channel_id: int, after: int) -> Sequence[FetchedMessage]:
        page: list[FetchedMessage] = []
        try:
            # hikari asks for 100 at a time and turns an `after` page oldest first; taking exactly one
            # page's worth makes it one request.
            async for message in self._bot.rest.fetch_messages(channel_id, after=hikari.Snowflake(after)).limit(
                PAGE_SIZE
            ):
                page.append(
                    FetchedMessage(
                        id=int(message.id),
                        author_id=int(message.author.id),
                        at=message.timestamp,
                        counts=message.webhook_id is None,
                    )
                )
        except hikari.ForbiddenError as exc:
            raise HistoryForbiddenError(str(exc.code)) from None
        return page
