"""Message activity: counted in memory, written with the ids it settles in one transaction every few seconds.

Activity is not reconciled; it is counted, each message once. Per channel the buffer knows which ids
are settled (the database's counted set, merged in when the guild is loaded, plus what this process
counted since), so a resume replay or a backfill page that overlaps the live path is recognised and
dropped. A flush writes the counts and the newly settled ids together: if the process dies before,
neither is in the database and the restart's backfill finds the messages again; if the flush fails
after its commit, the stored counted set says so and the counts are not put back.
"""

from __future__ import annotations

__all__ = ["ActivityBuffer"]

import asyncio
import contextlib
import datetime
import logging
import time
import typing

import attrs

from reconciler.activity.counted_state import CountedState
from reconciler.domain import (
    ActivityBatch,
    ActivityDelta,
    ChannelActivityDelta,
    CountedIds,
    CountedUpdate,
    RecordedGap,
)
from reconciler.observability.failure_streak import FailureStreak

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from reconciler.domain import ChannelCounted
    from reconciler.observability.metrics import Metrics
    from reconciler.store.api import Store

_LOGGER: typing.Final = logging.getLogger(__name__)

_EARLY_LIMIT: typing.Final = 100_000
"""Messages kept per guild while its counted state cannot be read (about 10 MB)."""

_MemberKey = tuple[int, int, datetime.date]
_ChannelKey = tuple[int, int, datetime.date]


class _Entry:
    __slots__ = ("first_arrival", "last_seen_at", "messages")

    def __init__(self, last_seen_at: datetime.datetime, arrival: float) -> None:
        self.messages = 0
        self.last_seen_at = last_seen_at
        self.first_arrival = arrival


@attrs.define(kw_only=True)
class _Taken:
    """One flush's content, kept until its outcome is known."""

    members: dict[_MemberKey, _Entry]
    channels: dict[_ChannelKey, int]
    counted: dict[int, CountedIds]
    gaps: list[RecordedGap]

    def batch(self, guild_of: Mapping[int, int]) -> ActivityBatch:
        return ActivityBatch(
            members=[
                ActivityDelta(guild_id=g, user_id=u, day=d, messages=e.messages, last_seen_at=e.last_seen_at)
                for (g, u, d), e in self.members.items()
            ],
            channels=[
                ChannelActivityDelta(guild_id=g, channel_id=c, day=d, messages=n)
                for (g, c, d), n in self.channels.items()
            ],
            counted=[
                CountedUpdate(guild_id=guild_of[c], channel_id=c, counted=counted)
                for c, counted in self.counted.items()
            ],
            gaps=list(self.gaps),
        )


class ActivityBuffer:
    """Counts messages per member, channel and day; `flush` writes them and the ids they settle."""

    def __init__(
        self,
        *,
        store: Store,
        metrics: Metrics,
        flush_seconds: float,
        import_history_days: float = 0.0,
        clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._flush_seconds = flush_seconds
        self._state = CountedState(
            store=store,
            import_history_days=import_history_days,
            clock=clock or (lambda: datetime.datetime.now(datetime.UTC)),
        )
        self._channels = self._state.channels
        self._members: dict[_MemberKey, _Entry] = {}
        self._channel_counts: dict[_ChannelKey, int] = {}
        self._gaps: list[RecordedGap] = []
        self._early: dict[int, list[tuple[int, int, int, datetime.datetime, bool] | None]] = {}
        """Live messages of guilds whose stored state is not read yet, in arrival order (None: a new session)."""
        self._uncertain: list[_Taken] = []
        self._inflight: asyncio.Future[int] | None = None
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._failures = FailureStreak(_LOGGER, "activity flush failed")
        """A database outage fails every flush; the log gets its start, a reminder a minute, its end."""
        self._live_duplicates = metrics.activity_duplicates.labels(source="live")
        self._backfill_duplicates = metrics.activity_duplicates.labels(source="backfill")
        self.messages_recorded = 0

    # --- counting ------------------------------------------------------------------------------------

    def record(
        self, guild_id: int, channel_id: int, message_id: int, user_id: int, at: datetime.datetime, *, counts: bool
    ) -> bool:
        """A message from the gateway. `counts` is False for what is settled but not counted (webhooks).

        Returns False for a message already settled (a resume replay). Only the fact is kept, never the
        content.
        """
        channel = self._channels.get(channel_id)
        if channel is None:  # (a channel is known only once its guild's stored state is read)
            if not self._state.is_loaded(guild_id):
                self._wait_for_load(guild_id, (channel_id, message_id, user_id, at, counts))
                return True
            channel = self._state.channel(guild_id, channel_id, first_live=message_id)
        tail = channel.live_tail
        known = channel.known
        if tail is not None and known.extend_newest(tail, message_id):
            # One gateway session delivers a channel's messages in order and in full: nothing between
            # the tail and this id was missed.
            channel.pending.extend_to(tail, message_id)
            channel.live_tail = message_id
        elif message_id in known:
            self._live_duplicates.inc()
            return False
        else:
            if tail is not None and message_id > tail:
                known.extend_to(tail, message_id)
                channel.pending.extend_to(tail, message_id)
            else:
                known.add(message_id, message_id)
                channel.pending.add(message_id, message_id)
            if tail is None or message_id > tail:
                channel.live_tail = message_id
        if counts:
            self._count(guild_id, channel_id, user_id, at)
        return True

    def _wait_for_load(self, guild_id: int, message: tuple[int, int, int, datetime.datetime, bool]) -> None:
        """Until the guild's stored counted sets are read, a message cannot be checked against them: it
        waits, in arrival order, and is recorded when they are (`load_guild`)."""
        early = self._early.setdefault(guild_id, [])
        if len(early) < _EARLY_LIMIT:
            early.append(message)
        elif early[-1] is not None:
            # The database has been unreadable for long: drop, and let nothing vouch for the dropped ids
            # (a session break); they stay unsettled, so the next backfill fetches them.
            early.append(None)
            _LOGGER.warning(
                "activity: messages dropped until the counted state is readable", extra={"guild_id": guild_id}
            )

    def record_fetched(
        self, guild_id: int, channel_id: int, message_id: int, user_id: int, at: datetime.datetime, *, counts: bool
    ) -> bool:
        """A message from the history (backfill); False when it was settled already (seen live)."""
        channel = self._state.channel(guild_id, channel_id)
        if message_id in channel.known:
            self._backfill_duplicates.inc()
            return False
        channel.known.add(message_id, message_id)
        channel.pending.add(message_id, message_id)
        if counts:
            self._count(guild_id, channel_id, user_id, at)
            self._metrics.backfill_messages.inc()
        return True

    def settle(self, guild_id: int, channel_id: int, first: int, last: int) -> None:
        """Every message with an id in [first, last] was fetched (and recorded) or never existed."""
        if first > last:
            return
        channel = self._state.channel(guild_id, channel_id)
        channel.known.add(first, last)
        channel.pending.add(first, last)

    def give_up(self, guild_id: int, channel_id: int, after: int, before: int, reason: str) -> None:
        """Ids (after, before) are not fetched (too old): settled, and recorded as a gap."""
        if before - after < 2:
            return
        self.settle(guild_id, channel_id, after + 1, before - 1)
        self._gaps.append(
            RecordedGap(guild_id=guild_id, channel_id=channel_id, after=after, before=before, reason=reason)
        )

    def _count(self, guild_id: int, channel_id: int, user_id: int, at: datetime.datetime) -> None:
        day = at.date()
        key = (guild_id, user_id, day)
        entry = self._members.get(key)
        if entry is None:
            entry = self._members[key] = _Entry(at, time.monotonic())
            self._metrics.activity_buffer.set(len(self._members))
        entry.messages += 1
        entry.last_seen_at = max(entry.last_seen_at, at)
        channel_key = (guild_id, channel_id, day)
        self._channel_counts[channel_key] = self._channel_counts.get(channel_key, 0) + 1
        self.messages_recorded += 1

    def session_restarted(self, guild_id: int) -> None:
        """A fresh gateway session for the guild (GUILD_CREATE): its live tails no longer vouch for gaps."""
        early = self._early.get(guild_id)
        if early:
            early.append(None)
        self._state.restart_session(guild_id)

    def __len__(self) -> int:
        return len(self._members)

    # --- what is settled -----------------------------------------------------------------------------

    async def load_guild(self, guild_id: int) -> Mapping[int, ChannelCounted]:
        """Merge the guild's stored counted sets into what this process knows (once per guild)."""
        stored, just_now = await self._state.load(guild_id)
        if just_now:
            for early in self._early.pop(guild_id, ()):
                if early is None:
                    self.session_restarted(guild_id)
                else:
                    channel_id, message_id, user_id, at, counts = early
                    self.record(guild_id, channel_id, message_id, user_id, at, counts=counts)
        return stored

    def channels_listed(self, guild_id: int) -> None:
        """See `CountedState.channels_listed`: channels created from now on count from their creation."""
        self._state.channels_listed(guild_id)

    def tracking_since(self, guild_id: int) -> datetime.datetime | None:
        """When counting started in the guild (None before `load_guild`)."""
        return self._state.tracking_since(guild_id)

    def known(self, guild_id: int, channel_id: int, *, head: int | None = None) -> CountedIds:
        """The channel's settled ids (live view: the backfill re-reads it after every page).

        `head` is the channel's `last_message_id` as Discord reported it, for a channel seen first here.
        """
        return self._state.channel(guild_id, channel_id, head=head).known

    # --- flushing ------------------------------------------------------------------------------------

    async def flush(self) -> int:
        """Write everything buffered; on failure keep it for the next flush. Returns member rows written."""
        async with self._flush_lock:
            await self._resolve_uncertain()
            for guild_id in {*(c.guild_id for c in self._channels.values() if c.pending.ranges), *self._early}:
                if not self._state.is_loaded(guild_id):
                    try:
                        await self.load_guild(guild_id)
                    except Exception:
                        self._failures.failed({"step": "read counted state", "guild_id": guild_id})
                        return 0
            taken = self._take()
            if taken is None:
                return 0
            # Shielded: a cancelled caller (shutdown, a backfill restarted) must not lose a batch whose
            # outcome is still unknown; `stop` waits for it.
            self._inflight = asyncio.ensure_future(self._write(taken))
            return await asyncio.shield(self._inflight)

    async def _write(self, taken: _Taken) -> int:
        batch = taken.batch({cid: c.guild_id for cid, c in self._channels.items()})
        started = time.monotonic()
        try:
            await self._store.commit_activity(batch)
        except Exception:
            self._metrics.errors.labels(stage="activity").inc()
            self._failures.failed({"step": "write", "rows": len(batch.members)})
            await self._after_failure(taken)
            return 0
        finally:
            self._metrics.db_latency.labels(operation="add_activity").observe(time.monotonic() - started)
            self._metrics.activity_buffer.set(len(self._members))
        self._failures.succeeded()
        self._committed(taken)
        return len(batch.members)

    def _take(self) -> _Taken | None:
        counted: dict[int, CountedIds] = {}
        for channel_id, channel in self._channels.items():
            if not self._state.is_loaded(channel.guild_id):
                continue  # kept until the guild's stored state is known (its new channels' watermarks)
            if channel.pending.ranges or channel.pending.watermark:
                counted[channel_id] = channel.pending
                channel.pending = CountedIds()
        waiting_guilds = {c.guild_id for c in self._channels.values() if not self._state.is_loaded(c.guild_id)}
        members = {k: e for k, e in self._members.items() if k[0] not in waiting_guilds}
        channels = {k: n for k, n in self._channel_counts.items() if k[0] not in waiting_guilds}
        gaps = [g for g in self._gaps if g.guild_id not in waiting_guilds]
        if not (counted or members or channels or gaps):
            return None
        for key in members:
            del self._members[key]
        for key in channels:
            del self._channel_counts[key]
        self._gaps = [g for g in self._gaps if g.guild_id in waiting_guilds]
        return _Taken(members=members, channels=channels, counted=counted, gaps=gaps)

    def _committed(self, taken: _Taken) -> None:
        now = time.monotonic()
        for entry in taken.members.values():
            self._metrics.event_lag.observe(now - entry.first_arrival)

    async def _after_failure(self, taken: _Taken) -> None:
        """The commit raised: it may still have committed (the connection dropped after COMMIT)."""
        outcome = await self._was_committed(taken)
        if outcome is None:
            if not self._uncertain:  # once per outage, not once per flush
                _LOGGER.warning("activity flush outcome unknown; checked again before the next flush")
            self._uncertain.append(taken)
        elif outcome:
            _LOGGER.warning("activity flush raised after its commit; counts not put back")
            self._committed(taken)
        else:
            self._restore(taken)

    async def _resolve_uncertain(self) -> None:
        still: list[_Taken] = []
        for index, taken in enumerate(self._uncertain):
            outcome = await self._was_committed(taken)
            if outcome is None:
                # The database does not answer: the rest cannot be told either. Asking for each would log
                # one error per batch per flush, a number that grows with the outage.
                still.extend(self._uncertain[index:])
                break
            if outcome:
                self._committed(taken)
            else:
                self._restore(taken)
        self._uncertain = still

    async def _was_committed(self, taken: _Taken) -> bool | None:
        """True when the stored counted sets hold every id the flush settled; None when unreadable.

        The ids a flush settles were settled nowhere before (every message is checked against what is
        known), so finding them stored means this very flush committed.
        """
        if not taken.counted:
            return False  # nothing to tell by; counts without ids come only from `add_activity` callers
        try:
            return await self._state.stored_holds(taken.counted)
        except Exception:
            if self._failures.failures:  # the flush that failed, or the one about to, tells the streak
                _LOGGER.debug("activity flush: outcome not readable", exc_info=True)
            else:
                self._failures.failed({"step": "check outcome"})
            return None

    def _restore(self, taken: _Taken) -> None:
        """Put a failed flush back, adding what arrived during the attempt."""
        for key, old in taken.members.items():
            current = self._members.get(key)
            if current is None:
                self._members[key] = old
            else:
                current.messages += old.messages
                current.last_seen_at = max(current.last_seen_at, old.last_seen_at)
                current.first_arrival = min(current.first_arrival, old.first_arrival)
        for key, messages in taken.channels.items():
            self._channel_counts[key] = self._channel_counts.get(key, 0) + messages
        for channel_id, counted in taken.counted.items():
            self._channels[channel_id].pending.merge(counted)
        self._gaps[:0] = taken.gaps
        self._metrics.activity_buffer.set(len(self._members))

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="activity-flush")

    async def stop(self) -> None:
        """Stop the timer and flush what is left (a clean shutdown loses no message count)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._inflight is not None and not self._inflight.done():
            with contextlib.suppress(Exception):
                await self._inflight
        for _ in range(3):
            await self.flush()
            if not self._members and not self._uncertain:
                return
            await asyncio.sleep(0.5)
        _LOGGER.error(
            "activity not written at shutdown; the next start's backfill counts it",
            extra={"rows": len(self._members)},
        )

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            await self.flush()
