"""Message activity as counts per member and day: counted, never reconciled, content never kept."""

from __future__ import annotations

__all__ = ["ActivityDelta", "merge_activity"]

import logging
import typing

import attrs

if typing.TYPE_CHECKING:
    import datetime
    from collections.abc import Iterable

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
