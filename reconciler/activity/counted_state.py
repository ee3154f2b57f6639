"""What this process knows of each channel's counted set, and where a channel's counting starts.

The database's counted sets are read once per guild (`load`) and merged with what this process has
settled since; the buffer checks every message against them. A channel seen for the first time
starts at a watermark: the guild's counting start (or the channel's creation), never after the first
message the bot saw in it, and, when nothing was ever counted in the guild, at Discord's "now" (the
channel's latest message), not the local clock's.
"""

from __future__ import annotations

__all__ = ["ChannelState", "CountedState"]

import asyncio
import datetime
import logging
import typing

from reconciler.domain import CountedIds, snowflake_at

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from reconciler.domain import ChannelCounted
    from reconciler.store.api import Store

_LOGGER: typing.Final = logging.getLogger(__name__)


class ChannelState:
    """One channel: settled ids (stored + settled since), those not yet flushed, and the live tail."""

    __slots__ = ("guild_id", "known", "live_tail", "pending")

    def __init__(self, guild_id: int) -> None:
        self.guild_id = guild_id
        self.known = CountedIds()
        self.pending = CountedIds()
        """Ids settled since the last flush (watermark 0: nothing but them)."""
        self.live_tail: int | None = None
        """The last id the gateway delivered in the current session: every id up to it has been seen."""


class CountedState:
    """Every channel's `ChannelState`, by channel id; a guild's stored sets are merged in by `load`."""

    def __init__(self, *, store: Store, import_history_days: float, clock: Callable[[], datetime.datetime]) -> None:
        self._store = store
        self._import_history_days = import_history_days
        self._clock = clock
        self.channels: dict[int, ChannelState] = {}
        self._loaded: dict[int, Mapping[int, ChannelCounted]] = {}
        self._guild_since: dict[int, datetime.datetime] = {}
        self._fresh: set[int] = set()
        """Guilds with nothing counted when loaded and no import asked: counting starts at Discord's now."""
        self._load_locks: dict[int, asyncio.Lock] = {}

    def is_loaded(self, guild_id: int) -> bool:
        return guild_id in self._loaded

    def channel(
        self, guild_id: int, channel_id: int, *, first_live: int | None = None, head: int | None = None
    ) -> ChannelState:
        """The channel's state; one seen for the first time starts where its counting begins.

        `first_live` is the id of the live message that shows it first, `head` its latest message id as
        Discord reported it at the guild's GUILD_CREATE (the backfill). Neither may fall before the start:
        the local clock can run ahead of Discord's.
        """
        channel = self.channels.get(channel_id)
        if channel is None:
            channel = self.channels[channel_id] = ChannelState(guild_id)
            if guild_id in self._loaded:
                self.start_channel(channel, self._start_of(guild_id, channel_id, first_live=first_live, head=head))
        return channel

    def _start_of(self, guild_id: int, channel_id: int, *, first_live: int | None, head: int | None) -> int:
        if guild_id in self._fresh:
            # Nothing counted in the guild yet: count from now, "now" as Discord knows it.
            if first_live is not None:
                return first_live - 1
            return head if head is not None else channel_id
        watermark = self.initial_watermark(guild_id, channel_id)
        return watermark if first_live is None else min(watermark, first_live - 1)

    @staticmethod
    def start_channel(channel: ChannelState, watermark: int) -> None:
        """A channel seen for the first time: everything at or below `watermark` is not ours to count."""
        channel.known.raise_watermark(watermark)
        channel.pending.raise_watermark(watermark)

    def of_guild(self, guild_id: int) -> Iterator[ChannelState]:
        return (channel for channel in self.channels.values() if channel.guild_id == guild_id)

    async def load(self, guild_id: int) -> tuple[Mapping[int, ChannelCounted], bool]:
        """Merge the guild's stored counted sets in (once per guild); True as second value if just now."""
        lock = self._load_locks.setdefault(guild_id, asyncio.Lock())
        async with lock:
            stored = self._loaded.get(guild_id)
            if stored is not None:
                return stored, False
            stored = await self._store.load_counted(guild_id)
            if stored:
                self._guild_since[guild_id] = min(s.tracked_since for s in stored.values())
            else:
                self._guild_since[guild_id] = self._clock() - datetime.timedelta(days=self._import_history_days)
                if not self._import_history_days:
                    self._fresh.add(guild_id)
            for channel_id, state in stored.items():
                self.channel(guild_id, channel_id).known.merge(state.counted)  # not loaded yet: no start
            for channel_id, channel in self.channels.items():
                if channel.guild_id == guild_id and channel_id not in stored:
                    self.start_channel(channel, self.initial_watermark(guild_id, channel_id))
            self._loaded[guild_id] = stored
            return stored, True

    def channels_listed(self, guild_id: int) -> None:
        """The guild's channels as of its first GUILD_CREATE have started: later ones start at `since`.

        (Counting from "now as Discord knows it" is for what existed when counting began; a channel
        created afterwards, even one the bot did not hear of at once, counts from its creation.)
        """
        self._fresh.discard(guild_id)

    def tracking_since(self, guild_id: int) -> datetime.datetime | None:
        """When counting started in the guild (None before `load`)."""
        return self._guild_since.get(guild_id)

    def initial_watermark(self, guild_id: int, channel_id: int) -> int:
        """Where a channel without stored state starts: when the guild's counting started, or its creation."""
        since = self._guild_since.get(guild_id)
        start = snowflake_at(since) if since is not None else snowflake_at(self._clock())
        return max(start - 1, channel_id)

    def restart_session(self, guild_id: int) -> None:
        """A fresh gateway session for the guild: its live tails no longer vouch for gaps."""
        for channel in self.of_guild(guild_id):
            channel.live_tail = None

    async def stored_holds(self, counted: Mapping[int, CountedIds]) -> bool:
        """True when the stored counted sets hold every id of `counted` (channel id to ids). May raise."""
        stored: dict[int, CountedIds] = {}
        for guild_id in {self.channels[c].guild_id for c in counted}:
            stored.update({cid: s.counted for cid, s in (await self._store.load_counted(guild_id)).items()})
        for channel_id, ids in counted.items():
            have = stored.get(channel_id)
            if have is None:
                return False
            merged = have.copy()
            merged.merge(ids)
            if merged != have:
                return False
        return True
