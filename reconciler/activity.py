"""Message activity: counted in memory, written in one batch every few seconds, never lost on a hiccup.

Activity is not reconciled (Discord has no list of past messages to compare with); it is counted.
One row per (guild, user, day) in the buffer, so a burst of 10,000 messages from 50 people is 50 rows.
A failed flush puts the counts back for the next one; a clean shutdown flushes what is left.
"""

from __future__ import annotations

__all__ = ["ActivityBuffer"]

import asyncio
import contextlib
import logging
import time
import typing

from reconciler.domain import ActivityDelta

if typing.TYPE_CHECKING:
    import datetime

    from reconciler.observability.metrics import Metrics
    from reconciler.store.api import Store

_LOGGER: typing.Final = logging.getLogger(__name__)

_Key = tuple[int, int, "datetime.date"]


class _Entry:
    __slots__ = ("first_arrival", "last_seen_at", "messages")

    def __init__(self, last_seen_at: datetime.datetime, arrival: float) -> None:
        self.messages = 0
        self.last_seen_at = last_seen_at
        self.first_arrival = arrival


class ActivityBuffer:
    """Counts messages per member and day; `flush` writes them in one transaction."""

    def __init__(self, *, store: Store, metrics: Metrics, flush_seconds: float) -> None:
        self._store = store
        self._metrics = metrics
        self._flush_seconds = flush_seconds
        self._entries: dict[_Key, _Entry] = {}
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self.messages_recorded = 0

    def record(self, guild_id: int, user_id: int, at: datetime.datetime) -> None:
        """One message by a member at `at` (aware, UTC). Only the fact is kept, never the content."""
        key = (guild_id, user_id, at.date())
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(at, time.monotonic())
            self._metrics.activity_buffer.set(len(self._entries))
        entry.messages += 1
        entry.last_seen_at = max(entry.last_seen_at, at)
        self.messages_recorded += 1

    def __len__(self) -> int:
        return len(self._entries)

    async def flush(self) -> int:
        """Write everything buffered; on failure keep it for the next flush. Returns rows written."""
        async with self._flush_lock:
            if not self._entries:
                return 0
            taken, self._entries = self._entries, {}
            deltas = [
                ActivityDelta(guild_id=g, user_id=u, day=d, messages=e.messages, last_seen_at=e.last_seen_at)
                for (g, u, d), e in taken.items()
            ]
            started = time.monotonic()
            try:
                await self._store.add_activity(deltas)
            except Exception:
                self._restore(taken)
                self._metrics.errors.labels(stage="activity").inc()
                _LOGGER.exception("activity flush failed; kept for the next flush", extra={"rows": len(deltas)})
                return 0
            finally:
                self._metrics.db_latency.labels(operation="add_activity").observe(time.monotonic() - started)
                self._metrics.activity_buffer.set(len(self._entries))
            now = time.monotonic()
            for entry in taken.values():
                self._metrics.event_lag.observe(now - entry.first_arrival)
            return len(deltas)

    def _restore(self, taken: dict[_Key, _Entry]) -> None:
        """Put failed counts back, adding any that arrived during the attempt."""
        for key, old in taken.items():
            current = self._entries.get(key)
            if current is None:
                self._entries[key] = old
            else:
                current.messages += old.messages
                current.last_seen_at = max(current.last_seen_at, old.last_seen_at)
                current.first_arrival = min(current.first_arrival, old.first_arrival)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="activity-flush")

    async def stop(self) -> None:
        """Stop the timer and flush what is left (a clean shutdown loses no message count)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _ in range(3):
            await self.flush()
            if not self._entries:
                return
            await asyncio.sleep(0.5)
        _LOGGER.error("activity lost at shutdown", extra={"rows": len(self._entries)})

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            await self.flush()
