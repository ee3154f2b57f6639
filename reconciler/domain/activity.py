"""Message activity as counts per member and day: counted, never reconciled, content never kept."""

from __future__ import annotations

__all__ = [
    "ActivityBatch",
    "ActivityDelta",
    "ChannelActivityDelta",
    "ChannelCounted",
    "CountedUpdate",
    "RecordedGap",
    "merge_activity",
    "merge_channel_activity",
]

import logging
import typing

import attrs

if typing.TYPE_CHECKING:
    import datetime
    from collections.abc import Iterable, Sequence

    from reconciler.domain.counted import CountedIds

_LOGGER: typing.Final = logging.getLogger(__name__)


@attrs.define(frozen=True, kw_only=True, slots=True)
class ActivityDelta:
    """`messages` more messages by a member on `day` (UTC), the last of them at `last_seen_at` (aware)."""

    guild_id: int
    user_id: int
    day: datetime.date
    messages: int
    last_seen_at: datetime.datetime


def merge_activity(deltas: Iterable[ActivityDelta]) -> list[ActivityDelta]:
    """One delta per (guild, user, day): counts added, the latest `last_seen_at` kept; first-seen order."""
    merged: dict[tuple[int, int, datetime.date], ActivityDelta] = {}
    for delta in deltas:
        key = (delta.guild_id, delta.user_id, delta.day)
        previous = merged.get(key)
        if previous is None:
            merged[key] = delta
        else:
            merged[key] = attrs.evolve(
                previous,
                messages=previous.messages + delta.messages,
                last_seen_at=max(previous.last_seen_at, delta.last_seen_at),
            )
    return list(merged.values())


@attrs.define(frozen=True, kw_only=True, slots=True)
class ChannelActivityDelta:
    """`messages` more messages in a channel (or thread) on `day` (UTC)."""

    guild_id: int
    channel_id: int
    day: datetime.date
    messages: int


def merge_channel_activity(deltas: Iterable[ChannelActivityDelta]) -> list[ChannelActivityDelta]:
    """One delta per (guild, channel, day), counts added; first-seen order."""
    merged: dict[tuple[int, int, datetime.date], ChannelActivityDelta] = {}
    for delta in deltas:
        key = (delta.guild_id, delta.channel_id, delta.day)
        previous = merged.get(key)
        merged[key] = delta if previous is None else attrs.evolve(previous, messages=previous.messages + delta.messages)
    return list(merged.values())


@attrs.define(frozen=True, kw_only=True, slots=True)
class CountedUpdate:
    """Ids of a channel newly settled by a flush; the store merges them into the channel's counted set."""

    guild_id: int
    channel_id: int
    counted: CountedIds


@attrs.define(frozen=True, kw_only=True, slots=True)
class RecordedGap:
    """Ids (after, before) of a channel given up, not fetched: older than the backfill's maximum age."""

    guild_id: int
    channel_id: int
    after: int
    before: int
    reason: str


@attrs.define(frozen=True, kw_only=True, slots=True)
class ChannelCounted:
    """What the database holds about a channel's counting: its counted set and whether it can be read."""

    guild_id: int
    channel_id: int
    counted: CountedIds
    tracked_since: datetime.datetime
    forbidden_at: datetime.datetime | None


@attrs.define(frozen=True, kw_only=True, slots=True)
class ActivityBatch:
    """One flush: per-member and per-channel counts and the ids they settle, written in one transaction.

    A message counted here has its id in `counted`, and no message of `counted` was counted before:
    the counts and the counted sets move together, so a replay or a second fetch finds its ids settled.
    """

    members: Sequence[ActivityDelta] = ()
    channels: Sequence[ChannelActivityDelta] = ()
    counted: Sequence[CountedUpdate] = ()
    gaps: Sequence[RecordedGap] = ()

    def __bool__(self) -> bool:
        return bool(self.members or self.channels or self.counted or self.gaps)
