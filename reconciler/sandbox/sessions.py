"""Gateway sessions and connections: sequence numbers, the resume buffer, and an ordered writer per socket."""

from __future__ import annotations

__all__ = ["Connection", "Session", "dispatch_frame", "op_frame"]

import asyncio
import collections
import contextlib
import logging
import secrets
import time
import typing

import aiohttp
import orjson

from reconciler.sandbox import ids

if typing.TYPE_CHECKING:
    from aiohttp import web

    from reconciler.sandbox import compression
    from reconciler.sandbox import stats as stats_

_LOGGER: typing.Final = logging.getLogger(__name__)

_NAMES: dict[str, bytes] = {}


def dispatch_frame(name: str, seq: int, data: bytes) -> bytes:
    """`{"t": name, "s": seq, "op": 0, "d": data}` with `data` already encoded (spliced, not re-encoded)."""
    name_bytes = _NAMES.get(name)
    if name_bytes is None:
        name_bytes = _NAMES[name] = name.encode()
    return b'{"t":"%s","s":%d,"op":0,"d":%s}' % (name_bytes, seq, data)


def op_frame(op: int, data: object) -> bytes:
    """A non-dispatch payload (`s` and `t` are null)."""
    return orjson.dumps({"t": None, "s": None, "op": op, "d": data})


class Connection:
    """One websocket; frames go out in order through a single writer task."""

    __slots__ = (
        "_progress",
        "_space",
        "_wake",
        "_writer_task",
        "client_close_code",
        "closed",
        "drained",
        "encoder",
        "enqueued",
        "finished",
        "identified",
        "last_heartbeat",
        "queue",
        "received",
        "session",
        "stats",
        "written",
        "ws",
    )

    MAX_PENDING: typing.ClassVar[int] = 4
    """Frames a bulk producer (member chunks) may queue ahead of the socket."""

    def __init__(
        self, ws: web.WebSocketResponse, encoder: compression.FrameEncoder, stats: stats_.SandboxStats
    ) -> None:
        self.ws = ws
        self.encoder = encoder
        self.stats = stats
        self.session: Session | None = None
        self.client_close_code: int | None = None
        """Close code the client sent first (None when the server closed the socket)."""
        self.identified = False
        self.queue: collections.deque[tuple[bytes, int]] = collections.deque()
        self.closed = False
        self.drained = asyncio.Event()
        self.drained.set()
        self.finished = asyncio.Event()
        """Set once the server stopped handling the socket."""
        self.enqueued = 0
        self.written = 0
        self._progress = asyncio.Event()
        self.received: collections.deque[float] = collections.deque()
        self.last_heartbeat = time.monotonic()
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._writer_task: asyncio.Task[None] = asyncio.create_task(self._write_loop(), name="sandbox ws writer")

    def send(self, frame: bytes, *, members: int = 0) -> None:
        """Queue one payload (`members`: how many chunk members it carries, for the encode stats)."""
        if self.closed:
            return
        self.queue.append((frame, members))
        self.enqueued += 1
        self.drained.clear()
        if len(self.queue) >= self.MAX_PENDING:
            self._space.clear()
        self._wake.set()

    async def wait_written(self, count: int) -> None:
        """Wait until the first `count` queued payloads are on the socket (or the socket is gone)."""
        while self.written < count and not self.closed:
            self._progress.clear()
            await self._progress.wait()

    async def wait_for_space(self) -> None:
        """Wait until the queue is short enough for a bulk producer to add more."""
        await self._space.wait()

    async def _write_loop(self) -> None:
        ws = self.ws
        binary = self.encoder.binary
        encode = self.encoder.encode
        stats = self.stats
        try:
            while True:
                if not self.queue:
                    self.drained.set()
                    self._space.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                frame, members = self.queue.popleft()
                if len(self.queue) < self.MAX_PENDING:
                    self._space.set()
                started = time.thread_time()
                data = encode(frame)
                spent = time.thread_time() - started
                stats.compress_seconds += spent
                if members:
                    stats.chunk_compress_seconds += spent
                if binary:
                    await ws.send_bytes(data)
                else:
                    await ws.send_frame(data, aiohttp.WSMsgType.TEXT)
                stats.bytes_sent += len(data)
                stats.frames_sent += 1
                self.written += 1
                self._progress.set()
        except (ConnectionError, RuntimeError, aiohttp.ClientConnectionResetError) as exc:
            _LOGGER.debug("ws writer stopped", extra={"reason": repr(exc)})
        finally:
            self.closed = True
            self.queue.clear()
            self.drained.set()
            self._space.set()
            self._progress.set()

    async def close(self, code: int, message: str, *, drain_timeout: float = 5.0) -> None:
        """Send what is queued, then close the socket with a close code."""
        if not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained.wait(), drain_timeout)
        self.closed = True
        self._writer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer_task
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
                await asyncio.wait_for(self.ws.close(code=code, message=message.encode()), 5.0)

    async def shutdown(self) -> None:
        """Stop the writer without a close handshake (the socket is already gone)."""
        self.closed = True
        self._writer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer_task


class Session:
    """A gateway session of one shard: survives disconnects until invalidated or expired."""

    __slots__ = (
        "buffer",
        "buffer_bytes",
        "buffer_limit",
        "conn",
        "disconnected_at",
        "first_buffered_seq",
        "id",
        "intents",
        "invalidated",
        "large_threshold",
        "member_requests",
        "seq",
        "shard_count",
        "shard_id",
        "stats",
    )

    def __init__(
        self,
        *,
        shard_id: int,
        shard_count: int,
        intents: int,
        large_threshold: int,
        buffer_limit: int,
        stats: stats_.SandboxStats,
    ) -> None:
        self.id = secrets.token_hex(16)
        self.shard_id = shard_id
        self.shard_count = shard_count
        self.intents = intents
        self.large_threshold = large_threshold
        self.seq = 0
        self.buffer: collections.deque[tuple[int, bytes]] = collections.deque()
        self.buffer_bytes = 0
        self.buffer_limit = buffer_limit
        self.first_buffered_seq = 1
        self.conn: Connection | None = None
        self.invalidated = False
        self.disconnected_at: float | None = None
        self.member_requests: dict[int, float] = {}
        self.stats = stats

    def owns(self, guild_id: int) -> bool:
        """Whether this session's shard receives the guild's events."""
        return ids.shard_of(guild_id, self.shard_count) == self.shard_id

    @property
    def live(self) -> bool:
        """Not invalidated (it may be disconnected and waiting for a RESUME)."""
        return not self.invalidated

    def push(self, name: str, data: bytes, *, members: int = 0) -> None:
        """Sequence a dispatch, keep it for RESUME, and send it if connected."""
        self.seq += 1
        frame = dispatch_frame(name, self.seq, data)
        self.buffer.append((self.seq, frame))
        self.buffer_bytes += len(frame)
        while self.buffer_bytes > self.buffer_limit and len(self.buffer) > 1:
            seq, old = self.buffer.popleft()
            self.buffer_bytes -= len(old)
            self.first_buffered_seq = seq + 1
        self.stats.dispatches[name] += 1
        if self.conn is not None:
            self.conn.send(frame, members=members)

    def frames_after(self, seq: int) -> list[bytes] | None:
        """Frames with a sequence above `seq`, or None when some of them are no longer kept."""
        if seq > self.seq or seq < 0:
            return None
        if seq + 1 < self.first_buffered_seq:
            return None
        return [frame for s, frame in self.buffer if s > seq]

    def attach(self, conn: Connection) -> None:
        """Make `conn` the session's socket."""
        self.conn = conn
        conn.session = self
        self.disconnected_at = None

    def detach(self, conn: Connection) -> None:
        """Forget `conn` if it is still the session's socket."""
        if self.conn is conn:
            self.conn = None
            self.disconnected_at = time.monotonic()

    def invalidate(self) -> None:
        """The session can no longer be resumed; its buffer is dropped."""
        self.invalidated = True
        self.buffer.clear()
        self.buffer_bytes = 0
