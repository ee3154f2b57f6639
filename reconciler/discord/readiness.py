"""Which guilds have a complete member list in hikari's cache, and when they got it.

hikari clears a guild's members on every GUILD_CREATE (start-up, reconnect, a new guild) and refills
them from member chunks in the background. Until the last chunk of that request has arrived, the cache
holds a fraction of the guild, and a diff against it would mark real members as departed. This tracker
is the gate: a guild is reconciled in full only while it is ready.
"""

from __future__ import annotations

__all__ = ["ChunkProgress", "GuildReadiness"]

import asyncio
import logging
import time
import typing

import attrs

if typing.TYPE_CHECKING:
    from collections.abc import Callable

_LOGGER: typing.Final = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class ChunkProgress:
    """Chunking state of one guild, for `/sync stats`, `/readyz` and the chunking metric."""

    ready: bool
    chunks_received: int
    chunk_count: int | None
    since: float
    """Monotonic time chunking started, or the guild became ready."""

    @property
    def ratio(self) -> float:
        if self.ready:
            return 1.0
        if not self.chunk_count:
            return 0.0
        return min(1.0, self.chunks_received / self.chunk_count)

    def describe(self) -> str:
        if self.ready:
            return "ready"
        if self.chunk_count is None:
            return "waiting for the first member chunk"
        return f"chunking {self.chunks_received}/{self.chunk_count} chunks ({self.ratio:.0%})"


@attrs.define(kw_only=True)
class _GuildState:
    nonce: str | None = None
    received: set[int] = attrs.field(factory=set[int])
    chunk_count: int | None = None
    ready: bool = False
    since: float = attrs.field(factory=time.monotonic)
    generation: int = 0
    event: asyncio.Event = attrs.field(factory=asyncio.Event)


class GuildReadiness:
    """Follows hikari's chunk requests per guild; the listeners feed it, the reconciler asks it."""

    def __init__(self, *, on_loading: Callable[[int, bool], None] | None = None) -> None:
        """``on_loading(guild_id, True)`` when a guild's member list starts loading, ``False`` when it is
        complete or the guild is gone (the process's garbage-collector policy follows it)."""
        self._guilds: dict[int, _GuildState] = {}
        self._on_loading = on_loading

    def guild_available(self, guild_id: int, nonce: str | None) -> None:
        """GUILD_CREATE: the cache was just cleared and a chunk request with ``nonce`` went out."""
        state = self._guilds.get(guild_id)
        if state is None:
            state = self._guilds[guild_id] = _GuildState()
        state.nonce = nonce
        state.received.clear()
        state.chunk_count = None
        state.ready = False
        state.since = time.monotonic()
        state.event.clear()
        _LOGGER.info("guild chunking started", extra={"guild_id": guild_id, "nonce": nonce})
        if self._on_loading is not None:
            self._on_loading(guild_id, nonce is not None)  # without a request nothing is coming

    def chunk_requested(self, guild_id: int, nonce: str) -> None:
        """A new request replaced the one in flight (after a rate limit or a lost request)."""
        state = self._guilds.get(guild_id)
        if state is not None and not state.ready:
            state.nonce = nonce
            state.received.clear()
            state.chunk_count = None

    def chunk_received(self, guild_id: int, nonce: str | None, chunk_index: int, chunk_count: int) -> bool:
        """Count a chunk; returns True when it completed the guild's request."""
        state = self._guilds.get(guild_id)
        if state is None or state.ready or nonce != state.nonce:
            return False
        state.received.add(chunk_index)
        state.chunk_count = chunk_count
        state.since = time.monotonic()
        if len(state.received) < chunk_count:
            return False
        state.ready = True
        state.generation += 1
        state.since = time.monotonic()
        state.event.set()
        _LOGGER.info("guild ready", extra={"guild_id": guild_id, "chunks": chunk_count})
        if self._on_loading is not None:
            self._on_loading(guild_id, False)
        return True

    def guild_gone(self, guild_id: int) -> None:
        """The bot left the guild, or it went unavailable: nothing to reconcile against."""
        state = self._guilds.pop(guild_id, None)
        if state is not None:
            state.event.clear()
            if self._on_loading is not None:
                self._on_loading(guild_id, False)

    def is_ready(self, guild_id: int) -> bool:
        state = self._guilds.get(guild_id)
        return state is not None and state.ready

    def is_known(self, guild_id: int) -> bool:
        return guild_id in self._guilds

    def generation(self, guild_id: int) -> int:
        """Changes each time the guild becomes ready again: a run can tell the cache was refilled under it."""
        state = self._guilds.get(guild_id)
        return state.generation if state is not None else -1

    def pending_nonce(self, guild_id: int) -> str | None:
        state = self._guilds.get(guild_id)
        return None if state is None or state.ready else state.nonce

    def progress(self, guild_id: int) -> ChunkProgress | None:
        state = self._guilds.get(guild_id)
        if state is None:
            return None
        return ChunkProgress(
            ready=state.ready, chunks_received=len(state.received), chunk_count=state.chunk_count, since=state.since
        )

    def guild_ids(self) -> list[int]:
        return list(self._guilds)

    def not_ready(self) -> list[int]:
        return [gid for gid, state in self._guilds.items() if not state.ready]

    def stalled(self, *, older_than: float) -> list[int]:
        """Guilds still chunking with no progress for ``older_than`` seconds: their request was lost."""
        now = time.monotonic()
        return [gid for gid, s in self._guilds.items() if not s.ready and now - s.since > older_than]

    def touch(self, guild_id: int) -> None:
        state = self._guilds.get(guild_id)
        if state is not None:
            state.since = time.monotonic()

    async def wait_ready(self, guild_id: int, timeout: float | None = None) -> bool:
        state = self._guilds.get(guild_id)
        if state is None:
            return False
        try:
            async with asyncio.timeout(timeout):
                await state.event.wait()
        except TimeoutError:
            return False
        return True
