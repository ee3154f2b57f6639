"""Reusable fixtures: a running DiscordSandbox and a real hikari.GatewayBot connected to it.

Use from any conftest.py or test module:

    from sandbox_support import gateway_bot_factory, sandbox_factory  # re-export the fixtures

    @pytest.mark.asyncio
    async def test_something(sandbox_factory, gateway_bot_factory):
        sb = await sandbox_factory()
        guild_id = sb.create_guild(members=500, seed=1)
        bot = await gateway_bot_factory(sb)          # started, every guild of its shards chunked
        assert len(bot.cache.get_members_view_for_guild(guild_id)) == 500

The bot factory fails the test at teardown if hikari reported a payload it could not parse (hikari sends
those to the event loop's exception handler and to its ERROR log, never to the test).
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_INTENTS",
    "ChunkTracker",
    "EventRecorder",
    "HikariErrors",
    "RawGateway",
    "chunk_tracker",
    "gateway_bot_factory",
    "raw_gateway",
    "sandbox_factory",
    "wait_until",
]

import asyncio
import contextlib
import logging
import time
import typing
import zlib

import aiohttp
import hikari
import orjson
import pytest_asyncio

try:
    from backports import zstd
except ImportError:  # pragma: no cover - hikari without its speedups extra
    zstd = None

from reconciler.sandbox import DiscordSandbox, shard_of

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

DEFAULT_INTENTS: typing.Final = hikari.Intents.GUILDS | hikari.Intents.GUILD_MEMBERS | hikari.Intents.GUILD_MESSAGES

_LARGE_THRESHOLD: typing.Final = 250  # hikari's default `large_threshold`

SandboxFactory = typing.Callable[..., typing.Awaitable[DiscordSandbox]]
BotFactory = typing.Callable[..., typing.Awaitable[hikari.GatewayBot]]


async def wait_until(predicate: Callable[[], bool], *, timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll `predicate` until it is true; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            msg = f"condition not met within {timeout}s"
            raise AssertionError(msg)
        await asyncio.sleep(interval)


class ChunkTracker:
    """Records guilds whose member chunking finished (last chunk of a request received)."""

    def __init__(self, bot: hikari.GatewayBot) -> None:
        self.completed: dict[int, int] = {}
        self.members_received = 0
        self._changed = asyncio.Event()
        bot.subscribe(hikari.MemberChunkEvent, self._on_chunk)

    async def _on_chunk(self, event: hikari.MemberChunkEvent) -> None:
        self.members_received += len(event.members)
        if event.chunk_index == event.chunk_count - 1:
            self.completed[int(event.guild_id)] = self.completed.get(int(event.guild_id), 0) + 1
            self._changed.set()

    async def wait(self, guild_ids: Iterable[int], *, times: int = 1, timeout: float = 60.0) -> None:
        """Wait until every guild finished chunking at least `times` times."""
        wanted = list(guild_ids)
        deadline = time.monotonic() + timeout
        while any(self.completed.get(g, 0) < times for g in wanted):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = [g for g in wanted if self.completed.get(g, 0) < times]
                msg = f"chunking not finished for guilds {missing} within {timeout}s"
                raise AssertionError(msg)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)


EventT = typing.TypeVar("EventT", bound=hikari.Event)


class EventRecorder:
    """Records events of some types as the bot dispatches them; `wait_for` finds one matching a predicate."""

    def __init__(self, bot: hikari.GatewayBot, *event_types: type[hikari.Event]) -> None:
        self.events: list[hikari.Event] = []
        self._changed = asyncio.Event()
        for event_type in event_types:
            bot.subscribe(event_type, self._record)

    async def _record(self, event: hikari.Event) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, event_type: type[EventT]) -> list[EventT]:
        """Recorded events of one type, in order."""
        return [e for e in self.events if isinstance(e, event_type)]

    async def wait_for(
        self,
        event_type: type[EventT],
        predicate: Callable[[EventT], bool] = lambda _: True,
        *,
        timeout: float = 10.0,
    ) -> EventT:
        """The first recorded event of `event_type` matching `predicate` (waiting for it if needed)."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.of(event_type):
                if predicate(event):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                msg = f"no matching {event_type.__name__} within {timeout}s"
                raise AssertionError(msg)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)


class HikariErrors(logging.Handler):
    """Collects what hikari reports when it drops a payload: loop exception contexts and ERROR logs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.contexts: list[dict[str, typing.Any]] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def loop_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, typing.Any]) -> None:
        self.contexts.append(context)

    def describe(self) -> list[str]:
        """One line per problem."""
        problems = [f"{c.get('message')}: {c.get('exception')!r}" for c in self.contexts]
        problems += [r.getMessage() for r in self.records]
        return problems


@pytest_asyncio.fixture
async def sandbox_factory() -> AsyncIterator[SandboxFactory]:
    """`await sandbox_factory(**DiscordSandbox kwargs)` -> a started sandbox, stopped at teardown."""
    started: list[DiscordSandbox] = []

    async def make(**kwargs: typing.Any) -> DiscordSandbox:
        sandbox = DiscordSandbox(**kwargs)
        await sandbox.start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in reversed(started):
        await sandbox.stop()


@pytest_asyncio.fixture
async def gateway_bot_factory() -> AsyncIterator[BotFactory]:
    """`await gateway_bot_factory(sb, **options)` -> a started hikari.GatewayBot on the sandbox.

    Options: `intents` (GUILDS | GUILD_MEMBERS | GUILD_MESSAGES), `shard_ids`/`shard_count`,
    `cache_settings`, `wait_for_members` (True: return once every guild of the bot's shards is chunked),
    `listeners` ({event type: callback}, subscribed before start), `before_start` (called with the bot
    before it starts, e.g. to attach an arc client), `start_timeout`, and any other
    hikari.GatewayBot keyword. `chunk_tracker(bot)` tells which guilds finished chunking.
    """
    bots: list[hikari.GatewayBot] = []
    collector = HikariErrors()
    hikari_logger = logging.getLogger("hikari")
    hikari_logger.addHandler(collector)
    loop = asyncio.get_running_loop()
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(collector.loop_handler)

    async def make(
        sandbox: DiscordSandbox,
        *,
        intents: hikari.Intents = DEFAULT_INTENTS,
        shard_ids: typing.Sequence[int] | None = None,
        shard_count: int | None = None,
        wait_for_members: bool = True,
        listeners: typing.Mapping[type[hikari.Event], Callable[[typing.Any], Awaitable[None]]] | None = None,
        before_start: Callable[[hikari.GatewayBot], object] | None = None,
        start_timeout: float = 60.0,
        **bot_kwargs: typing.Any,
    ) -> hikari.GatewayBot:
        bot_kwargs.setdefault("banner", None)
        bot_kwargs.setdefault("logs", None)
        bot_kwargs.setdefault("suppress_optimization_warning", True)
        bot = hikari.GatewayBot(sandbox.token, intents=intents, rest_url=sandbox.rest_url, **bot_kwargs)
        tracker = ChunkTracker(bot)
        _TRACKERS[id(bot)] = tracker
        for event_type, callback in (listeners or {}).items():
            bot.subscribe(event_type, callback)
        if before_start is not None:
            before_start(bot)
        bots.append(bot)
        await asyncio.wait_for(
            bot.start(check_for_updates=False, shard_ids=shard_ids, shard_count=shard_count), start_timeout
        )
        if wait_for_members and intents & hikari.Intents.GUILD_MEMBERS:
            count = shard_count or 1
            mine = set(shard_ids if shard_ids is not None else range(count))
            presences = bool(intents & hikari.Intents.GUILD_PRESENCES)
            # hikari chunks every guild without the presences intent, only large ones with it
            wanted = [
                g
                for g in sandbox.guild_ids
                if shard_of(g, count) in mine and (not presences or sandbox.member_count(g) > _LARGE_THRESHOLD)
            ]
            await tracker.wait(wanted, timeout=start_timeout)
        return bot

    try:
        yield make
    finally:
        for bot in reversed(bots):
            _TRACKERS.pop(id(bot), None)
            if bot.is_alive:
                await bot.close()
        loop.set_exception_handler(previous_handler)
        hikari_logger.removeHandler(collector)
    problems = collector.describe()
    assert not problems, f"hikari reported payload problems: {problems}"


_TRACKERS: dict[int, ChunkTracker] = {}


def chunk_tracker(bot: hikari.GatewayBot) -> ChunkTracker:
    """The ChunkTracker the factory attached to a bot (chunk completions per guild)."""
    return _TRACKERS[id(bot)]


class RawGateway:
    """A bare gateway client for protocol checks hikari would never make (bad tokens, odd requests...)."""

    def __init__(
        self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, compress: str | None
    ) -> None:
        self._session = session
        self.ws = ws
        self._compress = compress
        self._zlib = zlib.decompressobj()
        self._zstd = zstd.ZstdDecompressor() if zstd is not None and compress == "zstd-stream" else None
        self._buffer = bytearray()
        self.close_code: int | None = None
        self.seq: int | None = None

    @classmethod
    async def connect(
        cls, sandbox: DiscordSandbox, *, compress: str | None = "zlib-stream", **query: str
    ) -> RawGateway:
        """Open a socket on the sandbox's gateway URL with `?v=10&encoding=json[&compress=...]`."""
        params = {"v": "10", "encoding": "json", **query}
        if compress is not None:
            params["compress"] = compress
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(sandbox.gateway_url, params=params, autoclose=False, max_msg_size=0)
        return cls(session, ws, compress)

    async def receive(self, timeout: float = 10.0) -> dict[str, typing.Any] | None:
        """The next payload, or None once the server closed (`close_code` tells why)."""
        while True:
            message = await self.ws.receive(timeout)
            if message.type == aiohttp.WSMsgType.CLOSE:
                self.close_code = int(message.data)
                await self.ws.close()
                return None
            if message.type in {aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR}:
                return None
            raw = message.data if isinstance(message.data, bytes) else message.data.encode()
            if self._compress == "zlib-stream":
                self._buffer += raw
                if not self._buffer.endswith(b"\x00\x00\xff\xff"):
                    continue
                raw = self._zlib.decompress(bytes(self._buffer))
                self._buffer.clear()
            elif self._zstd is not None:
                raw = self._zstd.decompress(raw)
            elif message.type == aiohttp.WSMsgType.BINARY:
                raw = zlib.decompress(raw)
            payload = typing.cast("dict[str, typing.Any]", orjson.loads(raw))
            if payload.get("s") is not None:
                self.seq = payload["s"]
            return payload

    async def send(self, op: int, data: object) -> None:
        """Send one payload."""
        await self.ws.send_bytes(orjson.dumps({"op": op, "d": data}))

    async def identify(
        self,
        sandbox: DiscordSandbox,
        *,
        intents: int = int(DEFAULT_INTENTS),
        shard: tuple[int, int] = (0, 1),
        token: str | None = None,
        large_threshold: int = 250,
    ) -> dict[str, typing.Any] | None:
        """Read HELLO, IDENTIFY, and return READY's `d` (None if the server closed instead)."""
        hello = await self.receive()
        assert hello is not None
        assert hello["op"] == 10
        await self.send(
            2,
            {
                "token": token or sandbox.token,
                "intents": intents,
                "shard": list(shard),
                "large_threshold": large_threshold,
                "properties": {"os": "linux", "browser": "raw", "device": "raw"},
            },
        )
        ready = await self.next_dispatch("READY")
        return ready["d"] if ready is not None else None

    async def next_dispatch(self, name: str, timeout: float = 10.0) -> dict[str, typing.Any] | None:
        """Skip payloads until a dispatch called `name` (None if the socket closed first)."""
        while True:
            payload = await self.receive(timeout)
            if payload is None or (payload["op"] == 0 and payload["t"] == name):
                return payload

    async def close(self) -> None:
        """Close the socket and its HTTP session."""
        if not self.ws.closed:
            await self.ws.close(code=1000)
        await self._session.close()


@contextlib.asynccontextmanager
async def raw_gateway(sandbox: DiscordSandbox, *, compress: str | None = "zlib-stream") -> AsyncIterator[RawGateway]:
    """`async with raw_gateway(sb) as gw:` a RawGateway closed on exit."""
    gateway = await RawGateway.connect(sandbox, compress=compress)
    try:
        yield gateway
    finally:
        await gateway.close()
