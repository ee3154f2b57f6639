"""Backfill: when a guild becomes ready, fetch from Discord the messages of every gap in its counted sets.

A gap is an id span not settled: behind the watermark's successor up to the first live message of the
session (the bot was down), or between ranges (a kill -9 lost buffered counts; a flush never happened).
Each channel is paged with `after=` from the gap's start until the gap is closed, while the live path
keeps counting: the gaps are re-read after every page, and a message already settled is not counted.
Gaps older than the maximum age are recorded and settled, not fetched; a channel the bot may not read
is recorded and skipped.
"""

from __future__ import annotations

__all__ = ["Backfill", "BackfillProgress", "ChannelHead", "FetchedMessage", "HistoryForbiddenError", "MessageHistory"]

import asyncio
import contextlib
import datetime
import logging
import time
import typing

import attrs

from reconciler.domain import snowflake_at

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from reconciler.activity.buffer import ActivityBuffer
    from reconciler.observability.metrics import Metrics
    from reconciler.store.api import Store

_LOGGER: typing.Final = logging.getLogger(__name__)

PAGE_SIZE: typing.Final = 100
"""Discord's largest page of message history."""
GAP_TOO_OLD: typing.Final = "older_than_max_age"


class HistoryForbiddenError(Exception):
    """The bot may not read the channel's history (403 Missing Access / Missing Permissions)."""


@attrs.define(frozen=True, kw_only=True, slots=True)
class ChannelHead:
    """A channel (or active thread) whose history counts, with its latest message id as Discord says."""

    channel_id: int
    last_message_id: int | None


@attrs.define(frozen=True, kw_only=True, slots=True)
class FetchedMessage:
    """What the backfill needs of a message: never its content."""

    id: int
    author_id: int
    at: datetime.datetime
    counts: bool
    """False for what the live path does not count either (webhook messages)."""


class MessageHistory(typing.Protocol):
    """Discord's message history, as the backfill reads it (the Discord layer implements it)."""

    async def channels(self, guild_id: int) -> Sequence[ChannelHead]:
        """Text and announcement channels and the guild's active threads."""
        ...

    async def page_after(self, channel_id: int, after: int) -> Sequence[FetchedMessage]:
        """Up to 100 messages with ids above `after`, oldest first; HistoryForbiddenError when not readable."""
        ...


@attrs.define(kw_only=True)
class BackfillProgress:
    """Where a guild's backfill stands (for /readyz, /sync stats and the metrics)."""

    channels: int = 0
    pending: int = 0
    messages: int = 0
    forbidden: list[int] = attrs.field(factory=list[int])
    failed: list[int] = attrs.field(factory=list[int])
    started_at: float = 0.0
    finished_at: float | None = None
    tracking_since: datetime.datetime | None = None
    error: str | None = None
    """Why the backfill could not start (the counted state or the channel list was not readable)."""

    @property
    def running(self) -> bool:
        return self.finished_at is None

    def describe(self) -> str:
        if self.error is not None:
            return f"backfill could not start ({self.error}); retried when the guild is next ready"
        if self.running:
            text = f"backfilling {self.pending} of {self.channels} channel(s), {self.messages} message(s) counted"
        else:
            since = self.tracking_since.strftime("%Y-%m-%d %H:%M UTC") if self.tracking_since else "start-up"
            text = f"activity complete since {since}"
        if self.forbidden:
            text += f"; {len(self.forbidden)} channel(s) not readable"
        if self.failed:
            text += f"; {len(self.failed)} channel(s) failed (retried when the guild is next ready)"
        return text


class Backfill:
    """One task per ready guild; channels fetched `concurrency` at a time; hikari honours rate limits."""

    def __init__(
        self,
        *,
        buffer: ActivityBuffer,
        history: MessageHistory,
        store: Store,
        metrics: Metrics,
        max_age_days: float,
        concurrency: int,
        clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self._buffer = buffer
        self._history = history
        self._store = store
        self._metrics = metrics
        self._max_age = datetime.timedelta(days=max_age_days)
        self._concurrency = concurrency
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._progress: dict[int, BackfillProgress] = {}
        self._forbidden: set[int] = set()
        """Channels found unreadable in this process: not asked again until the next start."""

    def guild_ready(self, guild_id: int) -> None:
        """A guild arrived with a fresh session (start-up, re-identify, joined): fill its gaps."""
        previous = self._tasks.pop(guild_id, None)
        if previous is not None:
            previous.cancel()
        self._progress[guild_id] = BackfillProgress(started_at=time.monotonic())
        task = asyncio.create_task(self._fill_guild(guild_id), name=f"backfill-{guild_id}")
        self._tasks[guild_id] = task
        task.add_done_callback(lambda t: self._tasks.pop(guild_id, None) if self._tasks.get(guild_id) is t else None)

    def guild_gone(self, guild_id: int) -> None:
        task = self._tasks.pop(guild_id, None)
        if task is not None:
            task.cancel()
        self._progress.pop(guild_id, None)
        self._metrics.backfill_channels_pending.labels(guild=str(guild_id)).set(0)

    def progress(self, guild_id: int) -> BackfillProgress | None:
        return self._progress.get(guild_id)

    def describe(self, guild_id: int) -> str | None:
        progress = self._progress.get(guild_id)
        return progress.describe() if progress is not None else None

    def running(self) -> list[int]:
        """Guilds whose backfill has not finished."""
        return [g for g, p in self._progress.items() if p.running]

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no backfill runs (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._tasks:
                return True
            await asyncio.sleep(0.02)
        return False

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- one guild -----------------------------------------------------------------------------------

    async def _fill_guild(self, guild_id: int) -> None:
        progress = self._progress[guild_id]
        gauge = self._metrics.backfill_channels_pending.labels(guild=str(guild_id))
        try:
            stored = await self._buffer.load_guild(guild_id)
            heads = await self._history.channels(guild_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._metrics.errors.labels(stage="activity").inc()
            _LOGGER.exception("backfill could not start", extra={"guild_id": guild_id})
            progress.finished_at = time.monotonic()
            progress.error = type(exc).__name__
            return
        progress.tracking_since = self._buffer.tracking_since(guild_id)
        todo: list[ChannelHead] = []
        for head in heads:
            known = self._buffer.known(guild_id, head.channel_id, head=head.last_message_id)  # a new one starts
            if head.channel_id in self._forbidden:
                progress.forbidden.append(head.channel_id)
            elif known.gaps(up_to=head.last_message_id):
                todo.append(head)
        self._buffer.channels_listed(guild_id)
        if any(head.channel_id not in stored for head in heads):
            # Channels seen for the first time are written now, with where their counting starts: a
            # crash before the first timed flush must not move that start to the next boot.
            await self._buffer.flush()
        progress.channels = len(heads)
        progress.pending = len(todo)
        gauge.set(len(todo))
        _LOGGER.info("backfill started", extra={"guild_id": guild_id, "channels": len(heads), "with_gaps": len(todo)})
        limit = asyncio.Semaphore(self._concurrency)

        async def one(head: ChannelHead) -> None:
            async with limit:
                await self._fill_channel(guild_id, head, progress)
                state = stored.get(head.channel_id)
                if state is not None and state.forbidden_at is not None and head.channel_id not in self._forbidden:
                    await self._record_access(guild_id, head.channel_id, forbidden=False)
            progress.pending -= 1
            gauge.set(progress.pending)

        try:
            await asyncio.gather(*(one(head) for head in todo))
        finally:
            progress.finished_at = time.monotonic()
            gauge.set(0)
        _LOGGER.info(
            "backfill finished",
            extra={
                "guild_id": guild_id,
                "messages": progress.messages,
                "forbidden": len(progress.forbidden),
                "failed": len(progress.failed),
                "seconds": round(progress.finished_at - progress.started_at, 3),
            },
        )

    async def _fill_channel(self, guild_id: int, head: ChannelHead, progress: BackfillProgress) -> None:
        channel_id = head.channel_id
        buffer = self._buffer
        try:
            while True:
                gaps = buffer.known(guild_id, channel_id).gaps(up_to=head.last_message_id)
                if not gaps:
                    return
                gap = gaps[0]
                cutoff = snowflake_at(self._clock() - self._max_age)
                if gap.after < cutoff - 1:
                    before = cutoff if gap.before is None else min(cutoff, gap.before)
                    buffer.give_up(guild_id, channel_id, gap.after, before, GAP_TOO_OLD)
                    self._metrics.backfill_channels_skipped.labels(reason="too_old").inc()
                    _LOGGER.info(
                        "backfill gap older than the maximum age recorded, not fetched",
                        extra={"guild_id": guild_id, "channel_id": channel_id, "after": gap.after, "before": before},
                    )
                    continue  # the rest of the gap, from the cutoff, is fetched
                page = await self._history.page_after(channel_id, gap.after)
                highest = gap.after
                reached = False
                for message in page:
                    if gap.before is not None and message.id >= gap.before:
                        reached = True
                        break
                    if (
                        buffer.record_fetched(
                            guild_id, channel_id, message.id, message.author_id, message.at, counts=message.counts
                        )
                        and message.counts
                    ):
                        progress.messages += 1
                    highest = max(highest, message.id)
                end_of_history = len(page) < PAGE_SIZE
                if gap.before is not None and (reached or end_of_history):
                    buffer.settle(guild_id, channel_id, gap.after + 1, gap.before - 1)
                elif end_of_history:
                    buffer.settle(guild_id, channel_id, gap.after + 1, max(highest, head.last_message_id or 0))
                else:
                    buffer.settle(guild_id, channel_id, gap.after + 1, highest)
        except HistoryForbiddenError:
            self._forbidden.add(channel_id)
            progress.forbidden.append(channel_id)
            self._metrics.backfill_channels_skipped.labels(reason="forbidden").inc()
            _LOGGER.warning(
                "backfill: channel history not readable (Missing Access); skipped",
                extra={"guild_id": guild_id, "channel_id": channel_id},
            )
            await self._record_access(guild_id, channel_id, forbidden=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            progress.failed.append(channel_id)
            self._metrics.errors.labels(stage="activity").inc()
            _LOGGER.exception("backfill of a channel failed", extra={"guild_id": guild_id, "channel_id": channel_id})

    async def _record_access(self, guild_id: int, channel_id: int, *, forbidden: bool) -> None:
        """Note in the database whether the channel's history is readable; a failure only logs (it is a note)."""
        watermark = self._buffer.known(guild_id, channel_id).watermark
        try:
            await self._store.set_channel_access(guild_id, channel_id, forbidden=forbidden, watermark_if_new=watermark)
        except Exception:
            self._metrics.errors.labels(stage="activity").inc()
            _LOGGER.exception("channel access not recorded", extra={"guild_id": guild_id, "channel_id": channel_id})
