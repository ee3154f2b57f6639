"""The soak's faults: what each kind does to the bot's world, a seeded schedule of them, and the database outages.

Each fault has a start (the world breaks) and an end (the world is whole again); convergence is measured
from the end. The sandbox's own switches make the gateway faults (`Faults.rate_limit_member_requests`,
`pause`, `disconnect`, `reconnect_request`); the database outages are made from outside the bot: a TCP
proxy cut for PostgreSQL, and for SQLite another connection holding the write lock (`BEGIN IMMEDIATE`),
which is what a stuck backup or a second writer does to a real deployment.
"""

from __future__ import annotations

__all__ = [
    "EXPECTED_NOISE",
    "SHUTDOWN",
    "DatabaseOutage",
    "FaultKind",
    "FaultPlan",
    "FaultSchedule",
    "ProxyOutage",
    "SqliteLockOutage",
]

import asyncio
import dataclasses
import enum
import re
import sqlite3
import typing

from soak_checks import ExpectedNoise

if typing.TYPE_CHECKING:
    import pathlib
    import random

    from reconciler.harness import TcpProxy


class FaultKind(enum.Enum):
    DATABASE_OUTAGE = "database_outage"
    """The database refuses work for 5-30 s (proxy cut / write lock held)."""
    INVALID_SESSION = "invalid_session"
    """INVALID_SESSION (not resumable): the bot identifies again, its cache is emptied and refilled."""
    RECONNECT = "reconnect"
    """RECONNECT (op 7): the bot reconnects and resumes; nothing is lost."""
    RATE_LIMITED = "rate_limited"
    """A fresh session whose member requests are answered RATE_LIMITED for a while."""
    EVENTS_DROPPED = "events_dropped"
    """The gateway drops every dispatch for a while: only the relist can bring those changes back."""
    KILL_9 = "kill_9"
    """SIGKILL of the bot, changes made while it is down, then a restart."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FaultPlan:
    """One planned fault: its kind and how long the world stays broken."""

    kind: FaultKind
    seconds: float


def _duration(kind: FaultKind, rng: random.Random, longest: float) -> float:
    """How long the world stays broken; `longest` (at least 5 s) keeps a short soak's faults short."""
    if kind is FaultKind.DATABASE_OUTAGE:
        return round(rng.uniform(5.0, min(30.0, longest)), 1)
    if kind is FaultKind.RATE_LIMITED:
        return round(rng.uniform(3.0, min(10.0, longest)), 1)
    if kind is FaultKind.EVENTS_DROPPED:
        return round(rng.uniform(2.0, min(6.0, longest)), 1)
    if kind is FaultKind.KILL_9:
        return round(rng.uniform(1.0, min(5.0, longest)), 1)
    return 0.0


class FaultSchedule:
    """A seeded, endless sequence of faults: rounds of one of each kind, in a shuffled order.

    Two kinds wait for their moment. Dropped events go first whenever the relist (their only repair)
    fires 3-12 s after the gateway would come back, so the wait for it stays short; until then the other
    kinds go, and once they are done, cycles of traffic alone until that moment comes. A kill -9 goes as soon as its round comes, but only while `kills_allowed`: the soak stops
    them after a third of the run, so that the bot's last life is long enough to judge its memory.
    """

    def __init__(self, rng: random.Random, *, longest: float) -> None:
        self._rng = rng
        self._longest = longest
        self._pending: list[FaultPlan] = []

    def _refill(self) -> None:
        kinds = list(FaultKind)
        self._rng.shuffle(kinds)
        self._pending.extend(FaultPlan(kind=k, seconds=_duration(k, self._rng, self._longest)) for k in kinds)

    def _take(self, kind: FaultKind) -> FaultPlan | None:
        for index, plan in enumerate(self._pending):
            if plan.kind is kind:
                return self._pending.pop(index)
        return None

    def next(self, *, kills_allowed: bool, relist_in: float, time_left: float | None = None) -> FaultPlan | None:
        """The next fault that may happen now, or None (a cycle of traffic alone). Dropped events are not
        started when their relist would come after `time_left` (None: no limit)."""
        if not kills_allowed:
            self._pending = [p for p in self._pending if p.kind is not FaultKind.KILL_9]
        if not self._pending:
            self._refill()
            if not kills_allowed:
                self._pending = [p for p in self._pending if p.kind is not FaultKind.KILL_9]
        dropped = next((p for p in self._pending if p.kind is FaultKind.EVENTS_DROPPED), None)
        in_time = time_left is None or relist_in <= time_left
        if dropped is not None and in_time and dropped.seconds + 3.0 <= relist_in <= dropped.seconds + 12.0:
            return self._take(FaultKind.EVENTS_DROPPED)
        if kills_allowed and (kill := self._take(FaultKind.KILL_9)) is not None:
            return kill
        for index, plan in enumerate(self._pending):
            if plan.kind is not FaultKind.EVENTS_DROPPED:
                return self._pending.pop(index)
        return None


class DatabaseOutage(typing.Protocol):
    async def begin(self) -> None: ...
    async def end(self) -> None: ...


class ProxyOutage:
    """PostgreSQL behind a TCP proxy: every connection reset and new ones refused until the end."""

    def __init__(self, proxy: TcpProxy) -> None:
        self._proxy = proxy

    async def begin(self) -> None:
        await self._proxy.cut()

    async def end(self) -> None:
        await self._proxy.restore()


class SqliteLockOutage:
    """Another connection holds SQLite's write lock (`BEGIN IMMEDIATE`): the bot's writers wait, then fail."""

    def __init__(self, path: pathlib.Path) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None

    def _lock(self) -> sqlite3.Connection:
        # The bot's busy timeout is 30 s: waiting as long for its current write to finish is fair.
        connection = sqlite3.connect(self._path, timeout=60.0, isolation_level=None, check_same_thread=False)
        connection.execute("BEGIN IMMEDIATE")
        return connection

    async def begin(self) -> None:
        self._connection = await asyncio.to_thread(self._lock)

    async def end(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await asyncio.to_thread(lambda: (connection.execute("ROLLBACK"), connection.close()))


# What a database outage makes the bot log at error level (or with a traceback), and nothing else: the
# events of the code paths that write, each only with an exception that says the database did not answer.
_DATABASE_UNREACHABLE: typing.Final = (
    r"ConnectionRefusedError: \[Errno 111\]",  # PostgreSQL: the proxy's port is closed
    r"ConnectionResetError: ",  # PostgreSQL: reset mid-read
    # asyncpg's ConnectionDoesNotExistError, named in SQLAlchemy's message or (cut while preparing) not
    r"(DBAPIError: .*)?(ConnectionDoesNotExistError'?>?: )?connection was closed in the middle of operation",
    r"(InterfaceError|DBAPIError): .*connection is closed",  # a pooled connection cut by the outage
    r"OperationalError: \(sqlite3\.OperationalError\) database is locked",  # SQLite: past the busy timeout
)
_WRITERS_THAT_LOG_OUTAGES: typing.Final = (
    ("reconciler.engine.reconcile", "reconcile failed"),
    ("reconciler.activity.buffer", "activity flush failed"),
    ("reconciler.activity.backfill", "backfill could not start"),
    ("reconciler.activity.backfill", "backfill of a channel failed"),
    ("reconciler.scheduling", "count audit not recorded"),
    ("reconciler.scheduling", "scheduled job failed for guild"),
    ("reconciler.scheduling", "drift check not recorded"),
    ("reconciler.scheduling", "scheduled job step failed"),  # the cleanup's retention step, run again next night
    # An outage longer than the retry budget (`sync.max_attempts`): the drift check repairs afterwards.
    ("reconciler.engine.queue", "reconcile given up"),
)
SHUTDOWN: typing.Final = "shutdown"
"""The window of the soak's SIGTERM at the end, from the signal to the exit."""
EXPECTED_NOISE: typing.Final[tuple[ExpectedNoise, ...]] = (
    *(
        ExpectedNoise(
            fault=FaultKind.DATABASE_OUTAGE.value, logger=logger, event=re.escape(event), errors=_DATABASE_UNREACHABLE
        )
        for logger, event in _WRITERS_THAT_LOG_OUTAGES
    ),
    # A scheduled job still running 5 s after SIGTERM is cancelled (`Scheduler.stop`); the bot counts no
    # error for it, but APScheduler's executor logs the CancelledError itself.
    ExpectedNoise(
        fault=SHUTDOWN,
        logger="apscheduler.executors.default",
        event=r'Job ".*" raised an exception',
        errors=(r"CancelledError",),
    ),
)
"""Error lines a fault explains; the gateway faults and kill -9 are expected to log no error at all."""
