"""Message history of a sandbox channel: what `GET /channels/{id}/messages` pages through."""

from __future__ import annotations

__all__ = ["ChannelHistory", "StoredMessage"]

import bisect
import dataclasses
import logging
import typing

_LOGGER: typing.Final = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StoredMessage:
    """A posted message, compact (benchmarks keep 100,000 of them); its JSON is built when asked for."""

    id: int
    author_id: int
    content: str
    webhook_id: int | None = None


class ChannelHistory:
    """Messages by ascending id, as Discord keeps them (deleted ones are gone)."""

    __slots__ = ("_by_id", "_ids")

    def __init__(self) -> None:
        self._ids: list[int] = []
        self._by_id: dict[int, StoredMessage] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, message: StoredMessage) -> None:
        if not self._ids or message.id > self._ids[-1]:
            self._ids.append(message.id)
        else:
            bisect.insort(self._ids, message.id)
        self._by_id[message.id] = message

    def remove(self, message_id: int) -> None:
        if self._by_id.pop(message_id, None) is not None:
            del self._ids[bisect.bisect_left(self._ids, message_id)]

    def page(
        self, *, limit: int, before: int | None = None, after: int | None = None, around: int | None = None
    ) -> list[StoredMessage]:
        """Discord's paging: at most `limit` messages, newest first.

        `after` gives the oldest messages above it; `before` (or nothing) the newest below it; `around`
        up to `limit` messages centred on it (the message itself included when it exists).
        """
        ids = self._ids
        if after is not None:
            start = bisect.bisect_right(ids, after)
            chosen = ids[start : start + limit]
        elif around is not None:
            centre = bisect.bisect_left(ids, around)
            older = limit // 2
            start = max(0, centre - older)
            chosen = ids[start : start + limit]
        else:
            stop = len(ids) if before is None else bisect.bisect_left(ids, before)
            chosen = ids[max(0, stop - limit) : stop]
        return [self._by_id[i] for i in reversed(chosen)]
