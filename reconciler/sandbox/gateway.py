"""The gateway (v10, JSON): HELLO, IDENTIFY/RESUME, heartbeats, member chunking and event routing by shard."""

from __future__ import annotations

__all__ = ["Gateway"]

import asyncio
import contextlib
import logging
import time
import typing

import orjson
from aiohttp import web

from reconciler.sandbox import chunking, compression, payloads, sessions
from reconciler.sandbox.settings import ALL_INTENTS, GatewayIntent

if typing.TYPE_CHECKING:
    from reconciler.sandbox import settings as settings_
    from reconciler.sandbox import state
    from reconciler.sandbox import stats as stats_

_LOGGER: typing.Final = logging.getLogger(__name__)

_DISPATCH: typing.Final = 0
_HEARTBEAT: typing.Final = 1
_IDENTIFY: typing.Final = 2
_PRESENCE_UPDATE: typing.Final = 3
_VOICE_STATE_UPDATE: typing.Final = 4
_RESUME: typing.Final = 6
_RECONNECT: typing.Final = 7
_REQUEST_GUILD_MEMBERS: typing.Final = 8
_INVALID_SESSION: typing.Final = 9
_HELLO: typing.Final = 10
_HEARTBEAT_ACK: typing.Final = 11
_KNOWN_CLIENT_OPS: typing.Final = frozenset({1, 2, 3, 4, 6, 8, 31, 43})

# Close codes (Discord's gateway close event codes).
UNKNOWN_ERROR: typing.Final = 4000
UNKNOWN_OPCODE: typing.Final = 4001
DECODE_ERROR: typing.Final = 4002
NOT_AUTHENTICATED: typing.Final = 4003
AUTHENTICATION_FAILED: typing.Final = 4004
ALREADY_AUTHENTICATED: typing.Final = 4005
RATE_LIMITED: typing.Final = 4008
SESSION_TIMED_OUT: typing.Final = 4009
INVALID_SHARD: typing.Final = 4010
INVALID_API_VERSION: typing.Final = 4012
INVALID_INTENTS: typing.Final = 4013
DISALLOWED_INTENTS: typing.Final = 4014

_LARGE_GUILD_CAP: typing.Final = 75_000
_RESUMED_DATA: typing.Final = b'{"_trace":["[\\"gateway-prd-sandbox\\",{\\"micros\\":0}]"]}'


class _ClosingError(Exception):
    """Raised inside the read loop to close the socket with a code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Gateway:
    """Every gateway session of the bot; events for a guild go to the sessions of the guild's shard."""

    def __init__(
        self,
        *,
        truth: state.GroundTruth,
        identity: settings_.BotIdentity,
        settings: settings_.SandboxSettings,
        faults: settings_.Faults,
        stats: stats_.SandboxStats,
    ) -> None:
        self._truth = truth
        self._identity = identity
        self._settings = settings
        self._faults = faults
        self._stats = stats
        self._sessions: dict[str, sessions.Session] = {}
        self._connections: set[sessions.Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.paused = False
        self.public_url = ""

    # -- scenario controls ---------------------------------------------------------------------------

    @property
    def sessions(self) -> list[sessions.Session]:
        """Live (not invalidated) sessions, connected or waiting for a resume."""
        self._expire_sessions()
        return [s for s in self._sessions.values() if s.live]

    def connected_sessions(self) -> list[sessions.Session]:
        """Sessions with an open socket."""
        return [s for s in self._sessions.values() if s.live and s.conn is not None and not s.conn.closed]

    def _session_connections(self, shard_id: int | None) -> list[sessions.Connection]:
        return [
            c
            for c in self._connections
            if c.session is not None and (shard_id is None or c.session.shard_id == shard_id)
        ]

    async def disconnect(self, *, resumable: bool, code: int = UNKNOWN_ERROR, shard_id: int | None = None) -> None:
        """Drop connections (of one shard, or all); a resumable drop keeps sessions and buffers their events."""
        conns = self._session_connections(shard_id)
        if resumable:
            await asyncio.gather(*(c.close(code, "sandbox: connection dropped") for c in conns))
            return
        for conn in conns:
            session = conn.session
            if session is not None:
                self._invalidate(session)
            conn.send(sessions.op_frame(_INVALID_SESSION, False))
        await asyncio.gather(*(self._close_soon(c, 1.0) for c in conns))

    async def reconnect_request(self, *, shard_id: int | None = None) -> None:
        """Send RECONNECT (op 7) on the connections of one shard, or all: clients close and resume."""
        conns = self._session_connections(shard_id)
        for conn in conns:
            conn.send(sessions.op_frame(_RECONNECT, None))
        await asyncio.gather(*(self._close_soon(c, 5.0) for c in conns))

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait until every payload queued so far has been written to its socket (later ones may wait)."""
        targets = [(c, c.enqueued) for c in self._connections if not c.closed]
        if targets:
            await asyncio.wait_for(asyncio.gather(*(c.wait_written(n) for c, n in targets)), timeout)

    async def close(self) -> None:
        """Close every socket (the sandbox is stopping) and stop background tasks."""
        for task in list(self._tasks):
            task.cancel()
        conns = list(self._connections)
        await asyncio.gather(*(c.close(UNKNOWN_ERROR, "sandbox stopping", drain_timeout=1.0) for c in conns))

    # -- event routing -------------------------------------------------------------------------------

    def dispatch(self, guild_id: int, name: str, data: bytes, *, intent: int, redacted: bytes | None = None) -> int:
        """Send a guild event to the sessions of its shard that hold `intent` (0: no intent needed).

        `redacted` replaces `data` for sessions without MESSAGE_CONTENT. Returns how many sessions got it;
        while paused nothing is sent (the events are lost, not queued).
        """
        if self.paused:
            self._stats.dropped_dispatches += 1
            return 0
        sent = 0
        for session in self._sessions_for(guild_id):
            if intent and not session.intents & intent:
                continue
            if redacted is not None and not session.intents & GatewayIntent.MESSAGE_CONTENT:
                session.push(name, redacted)
            else:
                session.push(name, data)
            sent += 1
        return sent

    def dispatch_guild_create(self, guild: state.Guild, *, joined: bool) -> None:
        """GUILD_CREATE for a guild that became available or that the bot joined (`joined`: no `unavailable`)."""
        if self.paused:
            self._stats.dropped_dispatches += 1
            return
        for session in self._sessions_for(guild.id):
            if session.intents & GatewayIntent.GUILDS:
                session.push("GUILD_CREATE", self._guild_create_data(session, guild, unavailable_key=not joined))

    def _sessions_for(self, guild_id: int) -> list[sessions.Session]:
        self._expire_sessions()
        return [s for s in self._sessions.values() if s.live and s.owns(guild_id)]

    def _expire_sessions(self) -> None:
        now = time.monotonic()
        ttl = self._settings.session_ttl_s
        for session_id, session in list(self._sessions.items()):
            if session.invalidated or (
                session.conn is None and session.disconnected_at is not None and now - session.disconnected_at > ttl
            ):
                session.invalidate()
                del self._sessions[session_id]

    def _invalidate(self, session: sessions.Session) -> None:
        session.invalidate()
        self._sessions.pop(session.id, None)
        self._stats.invalid_sessions += 1

    # -- websocket -----------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """aiohttp handler for the gateway URL (`?v=10&encoding=json&compress=...`)."""
        version = request.query.get("v", "10")
        encoding = request.query.get("encoding", "json")
        compress = request.query.get("compress")
        ws = web.WebSocketResponse(compress=False, max_msg_size=1 << 20, autoping=True)
        if not ws.can_prepare(request).ok:
            return web.json_response({"message": "400: Bad Request", "code": 0}, status=400)
        await ws.prepare(request)
        try:
            encoder = compression.encoder_for(
                compress, zlib_level=self._settings.zlib_level, zstd_level=self._settings.zstd_level
            )
        except ValueError:
            await ws.close(code=DECODE_ERROR, message=b"Error while decoding payload.")
            return ws
        conn = sessions.Connection(ws, encoder, self._stats)
        self._connections.add(conn)
        self._stats.connections += 1
        watchdog = asyncio.create_task(self._watch_heartbeats(conn), name="sandbox heartbeat watchdog")
        try:
            if version not in {"9", "10"}:
                raise _ClosingError(INVALID_API_VERSION, "Invalid API version.")
            if encoding != "json":
                raise _ClosingError(DECODE_ERROR, "Error while decoding payload.")
            conn.send(sessions.op_frame(_HELLO, {"heartbeat_interval": self._settings.heartbeat_interval_ms}))
            await self._read_loop(conn)
        except _ClosingError as exc:
            _LOGGER.info("gateway closing connection", extra={"code": exc.code, "reason": exc.reason})
            await conn.close(exc.code, exc.reason)
        finally:
            watchdog.cancel()
            conn.finished.set()
            await conn.shutdown()
            self._connections.discard(conn)
            close_code = conn.client_close_code
            if close_code is not None:
                self._stats.client_close_codes[close_code] += 1
            session = conn.session
            if session is not None:
                session.detach(conn)
                if close_code in {1000, 1001} and session.conn is None:
                    # Discord: a client closing with 1000/1001 ends its session for good.
                    self._invalidate(session)
            self._stats.connected_sessions = len(self.connected_sessions())
        return ws

    async def _read_loop(self, conn: sessions.Connection) -> None:
        limit, window = self._settings.gateway_send_limit
        while True:
            message = await conn.ws.receive()
            if message.type == web.WSMsgType.CLOSE:
                conn.client_close_code = int(message.data)
                return
            if message.type in {web.WSMsgType.CLOSING, web.WSMsgType.CLOSED, web.WSMsgType.ERROR}:
                return
            if message.type not in {web.WSMsgType.TEXT, web.WSMsgType.BINARY}:
                continue
            now = time.monotonic()
            conn.received.append(now)
            while conn.received and now - conn.received[0] > window:
                conn.received.popleft()
            if len(conn.received) > limit:
                raise _ClosingError(RATE_LIMITED, "You are being rate limited.")
            try:
                payload = orjson.loads(message.data)
                op = payload["op"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                raise _ClosingError(DECODE_ERROR, "Error while decoding payload.") from exc
            await self._handle_op(conn, op, payload.get("d"))

    async def _handle_op(self, conn: sessions.Connection, op: object, data: typing.Any) -> None:
        if op == _HEARTBEAT:
            conn.last_heartbeat = time.monotonic()
            if not self._faults.ignore_heartbeats:
                conn.send(sessions.op_frame(_HEARTBEAT_ACK, None))
            return
        if op not in _KNOWN_CLIENT_OPS:
            raise _ClosingError(UNKNOWN_OPCODE, "Unknown opcode.")
        if op == _IDENTIFY:
            if conn.identified:
                raise _ClosingError(ALREADY_AUTHENTICATED, "Already authenticated.")
            self._identify(conn, data)
            return
        if op == _RESUME:
            if conn.identified:
                raise _ClosingError(ALREADY_AUTHENTICATED, "Already authenticated.")
            self._resume(conn, data)
            return
        if not conn.identified or conn.session is None:
            raise _ClosingError(NOT_AUTHENTICATED, "Not authenticated.")
        if op == _REQUEST_GUILD_MEMBERS:
            self._request_members(conn.session, data)
        # presence, voice state, soundboard and channel info requests are accepted and ignored

    async def _watch_heartbeats(self, conn: sessions.Connection) -> None:
        interval = self._settings.heartbeat_interval_ms / 1000
        while not conn.closed:
            await asyncio.sleep(interval / 2)
            if time.monotonic() - conn.last_heartbeat > interval * 1.5 + 1.0:
                _LOGGER.info("gateway heartbeat missed", extra={"session": conn.session and conn.session.id})
                if conn.session is not None:
                    self._invalidate(conn.session)  # Discord: 4009 means start a new session
                await conn.close(SESSION_TIMED_OUT, "Session timed out.")
                return

    async def _close_soon(self, conn: sessions.Connection, delay: float) -> None:
        """Give a client `delay` seconds to close by itself, then close it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.finished.wait(), delay)
        if not conn.ws.closed:
            await conn.close(UNKNOWN_ERROR, "sandbox: reconnect")

    # -- handshake -----------------------------------------------------------------------------------

    def _check_token(self, data: typing.Mapping[str, typing.Any]) -> None:
        if data.get("token") != self._identity.token:
            raise _ClosingError(AUTHENTICATION_FAILED, "Authentication failed.")

    def _identify(self, conn: sessions.Connection, data: typing.Any) -> None:
        if not isinstance(data, dict):
            raise _ClosingError(DECODE_ERROR, "Error while decoding payload.")
        identify = typing.cast("dict[str, typing.Any]", data)
        self._check_token(identify)
        try:
            shard_id, shard_count = (int(x) for x in identify.get("shard") or (0, 1))
            intents = int(identify["intents"])
        except (KeyError, TypeError, ValueError) as exc:
            raise _ClosingError(DECODE_ERROR, "Error while decoding payload.") from exc
        if shard_count < 1 or not 0 <= shard_id < shard_count:
            raise _ClosingError(INVALID_SHARD, "Invalid shard.")
        if intents < 0 or intents & ~ALL_INTENTS:
            raise _ClosingError(INVALID_INTENTS, "Invalid intent(s).")
        if self._settings.disallowed_intents(intents):
            raise _ClosingError(DISALLOWED_INTENTS, "Disallowed intent(s).")
        large_threshold = min(250, max(50, int(identify.get("large_threshold") or 50)))
        if identify.get("compress") and isinstance(conn.encoder, compression.PlainEncoder):
            conn.encoder = compression.payload_encoder()
        session = sessions.Session(
            shard_id=shard_id,
            shard_count=shard_count,
            intents=intents,
            large_threshold=large_threshold,
            buffer_limit=self._settings.session_buffer_bytes,
            stats=self._stats,
        )
        self._sessions[session.id] = session
        conn.identified = True
        session.attach(conn)
        self._stats.identifies += 1
        self._stats.connected_sessions = len(self.connected_sessions())
        guilds = [g for g in self._truth.guilds.values() if session.owns(g.id)]
        ready = payloads.ready_obj(
            user=self._identity.user,
            session_id=session.id,
            resume_gateway_url=self.public_url,
            guild_ids=[g.id for g in guilds],
            shard=(shard_id, shard_count),
            application_id=self._identity.application_id,
            application_flags=self._settings.application_flags(),
        )
        session.push("READY", orjson.dumps(ready))
        _LOGGER.info("gateway session identified", extra={"session": session.id, "shard": [shard_id, shard_count]})
        if intents & GatewayIntent.GUILDS:
            for guild in guilds:
                if not guild.unavailable:
                    session.push("GUILD_CREATE", self._guild_create_data(session, guild, unavailable_key=True))

    def _resume(self, conn: sessions.Connection, data: typing.Any) -> None:
        if not isinstance(data, dict):
            raise _ClosingError(DECODE_ERROR, "Error while decoding payload.")
        resume = typing.cast("dict[str, typing.Any]", data)
        self._check_token(resume)
        self._expire_sessions()
        session = self._sessions.get(str(resume.get("session_id")))
        seq = resume.get("seq")
        frames = None
        if session is not None and isinstance(seq, int):
            overlap = self._faults.resume_replay_overlap
            frames = session.frames_after(int(seq))
            if overlap and frames is not None:
                frames = session.frames_after(max(session.first_buffered_seq - 1, int(seq) - overlap, 0)) or frames
        if session is None or frames is None:
            self._stats.failed_resumes += 1
            if session is not None:
                self._invalidate(session)
            conn.send(sessions.op_frame(_INVALID_SESSION, False))
            return
        previous = session.conn
        if previous is not None and previous is not conn:
            previous.session = None
            session.detach(previous)
            self._spawn(previous.close(UNKNOWN_ERROR, "sandbox: session resumed elsewhere"))
        conn.identified = True
        session.attach(conn)
        for frame in frames:
            conn.send(frame)
        session.push("RESUMED", _RESUMED_DATA)
        self._stats.resumes += 1
        self._stats.connected_sessions = len(self.connected_sessions())
        _LOGGER.info("gateway session resumed", extra={"session": session.id, "replayed": len(frames)})

    def _guild_create_data(self, session: sessions.Session, guild: state.Guild, *, unavailable_key: bool) -> bytes:
        count = len(guild.members)
        large = count > session.large_threshold
        presences = bool(session.intents & GatewayIntent.GUILD_PRESENCES)
        bot_member = guild.members.get(self._identity.user.id)
        if large or not presences or count > _LARGE_GUILD_CAP:
            members = [bot_member] if bot_member is not None else []
        else:
            members = list(guild.members.values())
        return orjson.dumps(
            payloads.guild_create_obj(
                guild,
                members=members,
                large=large,
                unavailable_key=unavailable_key,
                bot_joined_at=guild.bot_joined_at,
            )
        )

    # -- member chunking -----------------------------------------------------------------------------

    def _request_members(self, session: sessions.Session, data: typing.Any) -> None:
        if not isinstance(data, dict):
            raise _ClosingError(DECODE_ERROR, "Error while decoding payload.")
        try:
            request = chunking.parse_member_request(typing.cast("dict[str, typing.Any]", data))
        except (TypeError, ValueError) as exc:
            raise _ClosingError(DECODE_ERROR, "Error while decoding payload.") from exc
        self._stats.member_requests += 1
        guild = self._truth.guilds.get(request.guild_id)
        if guild is None or not session.owns(guild.id):
            _LOGGER.info("member request for a guild not on this shard", extra={"guild_id": request.guild_id})
            return
        if request.is_full:
            if not session.intents & GatewayIntent.GUILD_MEMBERS:
                _LOGGER.info("full member request without GUILD_MEMBERS ignored", extra={"guild_id": guild.id})
                return
            self._stats.full_member_requests += 1
            retry_after = self._member_request_retry_after(session, guild.id)
            if retry_after > 0:
                self._stats.rate_limited_member_requests += 1
                meta: dict[str, typing.Any] = {"guild_id": str(guild.id)}
                if request.nonce is not None:
                    meta["nonce"] = request.nonce
                session.push(
                    "RATE_LIMITED",
                    orjson.dumps({"opcode": _REQUEST_GUILD_MEMBERS, "retry_after": retry_after, "meta": meta}),
                )
                return
        members, not_found = chunking.select_members(guild, request)
        presences = request.presences and bool(session.intents & GatewayIntent.GUILD_PRESENCES)
        self._spawn(
            self._stream_chunks(
                session,
                guild.id,
                members,
                nonce=request.nonce,
                not_found=not_found if request.user_ids is not None else None,
                presences=presences,
            )
        )

    def _member_request_retry_after(self, session: sessions.Session, guild_id: int) -> float:
        now = time.monotonic()
        window = self._faults.member_request_window_s
        if self._faults.rate_limit_member_requests:
            return max(window, 1.0)
        last = session.member_requests.get(guild_id)
        if last is not None and now - last < window:
            return round(window - (now - last), 3)
        session.member_requests[guild_id] = now
        return 0.0

    async def _stream_chunks(
        self,
        session: sessions.Session,
        guild_id: int,
        members: list[state.Member],
        *,
        nonce: str | None,
        not_found: list[int] | None,
        presences: bool,
    ) -> None:
        chunks = chunking.chunk_payloads(
            guild_id, members, nonce=nonce, not_found=not_found, presences=presences, stats=self._stats
        )
        for data, count in chunks:
            while True:
                if session.invalidated:
                    return
                conn = session.conn
                if conn is not None and not conn.closed:
                    await conn.wait_for_space()
                    if session.conn is conn and not conn.closed:
                        break
                else:
                    await asyncio.sleep(0.05)
            if self._faults.chunk_delay_s:
                await asyncio.sleep(self._faults.chunk_delay_s)
            if session.invalidated:
                return
            session.push("GUILD_MEMBERS_CHUNK", data, members=count)

    def _spawn(self, coro: typing.Coroutine[typing.Any, typing.Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _LOGGER.error("gateway task failed", exc_info=exc)
