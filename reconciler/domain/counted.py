"""Which message ids of a channel are counted: a watermark plus disjoint id ranges above it.

A message is counted exactly once when it is counted iff its id is in its channel's counted set, and
the set is written in the same transaction as the counts. A single high-water mark cannot say that:
the live path counts new messages while a backfill is still filling the gap behind them. So the set is
a watermark (every id at or below it is settled) and closed ranges of ids settled above it. A range
covers ids, not messages: [a, b] means every message of the channel whose id lies in it has been
counted (or, for a recorded gap, given up), so the snowflakes in between need no look-up.
"""

from __future__ import annotations

__all__ = [
    "DISCORD_EPOCH_MS",
    "CountedIds",
    "IdGap",
    "IdRange",
    "format_ranges",
    "parse_ranges",
    "snowflake_at",
    "snowflake_time",
]

import bisect
import datetime
import logging
import typing

import attrs

if typing.TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

_LOGGER: typing.Final = logging.getLogger(__name__)

DISCORD_EPOCH_MS: typing.Final = 1_420_070_400_000

IdRange: typing.TypeAlias = tuple[int, int]
"""Closed range of message ids [first, last]."""


def snowflake_at(at: datetime.datetime) -> int:
    """The smallest snowflake made at `at` (aware): every message posted at or after it has a larger id."""
    ms = int(at.timestamp() * 1000) - DISCORD_EPOCH_MS
    return max(0, ms) << 22


def snowflake_time(snowflake: int) -> datetime.datetime:
    """When a snowflake was made (UTC)."""
    return datetime.datetime.fromtimestamp(((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000, tz=datetime.UTC)


@attrs.define(frozen=True, kw_only=True, slots=True)
class IdGap:
    """Ids not yet counted: every id in (after, before), or above `after` when `before` is None."""

    after: int
    before: int | None

    def holds(self, message_id: int) -> bool:
        return message_id > self.after and (self.before is None or message_id < self.before)


class CountedIds:
    """A mutable counted set: `watermark` and sorted, disjoint, non-adjacent ranges all above watermark + 1.

    Kept normalised after every change, so two sets holding the same ids compare equal.
    """

    __slots__ = ("_firsts", "_lasts", "watermark")

    def __init__(self, watermark: int = 0, ranges: Iterable[IdRange] = ()) -> None:
        if watermark < 0:
            msg = f"watermark must not be negative, got {watermark}"
            raise ValueError(msg)
        self.watermark = watermark
        self._firsts: list[int] = []
        self._lasts: list[int] = []
        for first, last in ranges:
            self.add(first, last)

    @property
    def ranges(self) -> tuple[IdRange, ...]:
        return tuple(zip(self._firsts, self._lasts, strict=True))

    @property
    def highest(self) -> int:
        """The highest id settled (the watermark when no range is above it)."""
        return self._lasts[-1] if self._lasts else self.watermark

    def copy(self) -> CountedIds:
        twin = CountedIds(self.watermark)
        twin._firsts = list(self._firsts)
        twin._lasts = list(self._lasts)
        return twin

    def __contains__(self, message_id: object) -> bool:
        if not isinstance(message_id, int):
            return False
        if message_id <= self.watermark:
            return True
        index = bisect.bisect_right(self._firsts, message_id) - 1
        return index >= 0 and message_id <= self._lasts[index]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CountedIds):
            return NotImplemented
        return self.watermark == other.watermark and self.ranges == other.ranges

    def __hash__(self) -> int:
        return hash((self.watermark, self.ranges))

    def __repr__(self) -> str:
        return f"CountedIds(watermark={self.watermark}, ranges={list(self.ranges)!r})"

    def covers(self, first: int, last: int) -> bool:
        """True when every id in [first, last] is settled."""
        if last <= self.watermark:
            return True
        if first <= self.watermark:
            first = self.watermark + 1
        index = bisect.bisect_right(self._firsts, first) - 1
        return index >= 0 and self._lasts[index] >= last

    def add(self, first: int, last: int) -> None:
        """Settle every id in [first, last], merging with overlapping or adjacent ranges."""
        if first > last:
            msg = f"empty range [{first}, {last}]"
            raise ValueError(msg)
        if last <= self.watermark:
            return
        first = max(first, self.watermark + 1)
        # Ranges that overlap or touch [first, last]: from the first whose last >= first - 1 ...
        start = bisect.bisect_left(self._lasts, first - 1)
        # ... to the last whose first <= last + 1.
        stop = bisect.bisect_right(self._firsts, last + 1)
        if start < stop:
            first = min(first, self._firsts[start])
            last = max(last, self._lasts[stop - 1])
        self._firsts[start:stop] = [first]
        self._lasts[start:stop] = [last]
        self._absorb()

    def add_id(self, message_id: int) -> bool:
        """Settle one id; False when it was settled already (a duplicate to ignore)."""
        if message_id in self:
            return False
        self.add(message_id, message_id)
        return True

    def extend_to(self, last_known: int, message_id: int) -> None:
        """Settle (last_known, message_id]: nothing between them was missed (one gateway session, in order)."""
        lasts = self._lasts
        if lasts and lasts[-1] == last_known and message_id > last_known:
            lasts[-1] = message_id  # the live path's common case: the newest range grows
            return
        if message_id <= last_known:
            self.add(message_id, message_id)
        else:
            self.add(last_known, message_id)

    def extend_newest(self, last_known: int, message_id: int) -> bool:
        """Grow the newest range from `last_known` (its end) to `message_id`; False if it does not end there.

        The live path's fast case: nothing is above the newest range, so `message_id` was not settled.
        """
        lasts = self._lasts
        if lasts and lasts[-1] == last_known < message_id:
            lasts[-1] = message_id
            return True
        return False

    def raise_watermark(self, to: int) -> None:
        """Everything at or below `to` is settled (counted or given up)."""
        if to <= self.watermark:
            return
        self.watermark = to
        keep = bisect.bisect_right(self._lasts, to)
        del self._firsts[:keep]
        del self._lasts[:keep]
        self._absorb()

    def merge(self, other: CountedIds) -> None:
        """Settle everything `other` settles."""
        self.raise_watermark(other.watermark)
        for first, last in other.ranges:
            self.add(first, last)

    def gaps(self, *, up_to: int | None) -> list[IdGap]:
        """What is not settled above the watermark, oldest first.

        Every hole below the highest range is a gap (a range above `up_to` is a message newer than the
        `last_message_id` known). `up_to` is the channel's latest message id (None when unknown or the
        channel is empty): there is a gap above the highest range only when `up_to` is beyond it.
        """
        gaps: list[IdGap] = []
        after = self.watermark
        for first, last in zip(self._firsts, self._lasts, strict=True):
            gaps.append(IdGap(after=after, before=first))
            after = last
        if up_to is not None and up_to > after:
            gaps.append(IdGap(after=after, before=None))
        return gaps

    def _absorb(self) -> None:
        """A first range that reaches the watermark becomes part of it."""
        if self._firsts and self._firsts[0] <= self.watermark + 1:
            self.watermark = max(self.watermark, self._lasts[0])
            del self._firsts[0]
            del self._lasts[0]


def format_ranges(ranges: Sequence[IdRange]) -> str:
    """The ranges as stored in the database: `first-last` separated by commas ('' for none)."""
    return ",".join(f"{first}-{last}" for first, last in ranges)


def parse_ranges(text: str) -> list[IdRange]:
    """The inverse of `format_ranges`; a malformed value is a programming error (ValueError)."""
    if not text:
        return []
    ranges: list[IdRange] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        ranges.append((int(first), int(last)))
    return ranges
