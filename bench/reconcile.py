"""Reconcile benchmark: cold sync, no-change and 1% drift at 10k / 100k / 1M members, against references.

Usage:
    .venv/bin/python bench/reconcile.py --sizes 10000,100000 --backends sqlite,postgresql
    .venv/bin/python bench/reconcile.py --sizes 1000000 --backends sqlite --naive-sample 20000

For each backend and size it measures, on a synthetic guild (3 roles per member on average):

- ``floor``: the same rows written by the simplest fast code (stdlib ``sqlite3`` ``executemany`` in one
  transaction / asyncpg ``copy_records_to_table``) into a freshly migrated, empty database;
- ``cold``: our path, the engine's own ``Reconciler.run`` of a full request (survey of both sides, then
  slices compared by fingerprint, loaded where dirty, diffed and written as a stream) into an empty
  database;
- ``no-change, first``: the same again over the synced database by a new ``Reconciler`` (the first run
  after a start: no fingerprint memo yet);
- ``no-change``: again by the same ``Reconciler`` (its memo filled by the runs before);
- ``drift``: 1% of members changed (nickname or roles), 1% left, 1% joined;
- ``naive``: one ORM ``session.get`` + modify per member, commit every 25, timed on a sample and
  extrapolated to N when N is larger than the sample.

Every measured operation starts from a desired snapshot built beforehand from fresh objects (nothing
memoized); "peak RSS" is the highest resident set size sampled during the operation minus the RSS
when it started (so the input snapshot is excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import pathlib
import random
import sqlite3
import sys
import tempfile
import threading
import time
import typing

import asyncpg
import attrs
import psutil
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import registry

from reconciler.config import SyncSettings
from reconciler.domain import GuildSnapshot, MemberState, RoleState, Scope, fingerprint
from reconciler.engine.reconcile import Reconciler
from reconciler.engine.runs import RunReport, SyncRequest, Trigger
from reconciler.observability.metrics import Metrics
from reconciler.store import SqlStore, upgrade_database
from reconciler.store import tables as t
from reconciler.store.bulk import sqlite_time
from reconciler.store.connect import BULK_CACHE_KIB, SQLITE_PRAGMAS, create_engine

if typing.TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

GUILD: typing.Final = 936_000_000_000_000_001
POSTGRES_DSN: typing.Final = "postgresql://postgres@127.0.0.1:5432/test"
ROLE_POOL: typing.Final = 60
EPOCH: typing.Final = datetime.datetime(2016, 1, 1, tzinfo=datetime.UTC)

Raw = tuple[int, str, str | None, str | None, bool, str | None, datetime.datetime, tuple[int, ...]]


# --- synthetic guild -----------------------------------------------------------------------------------


def role_ids() -> list[int]:
    return [GUILD + 1 + i for i in range(ROLE_POOL)]


def generate(n: int, seed: int = 4) -> list[Raw]:
    rng = random.Random(seed)
    pool = role_ids()
    rows: list[Raw] = []
    for i in range(n):
        user_id = 100_000_000_000_000_000 + i * 7919
        roles = tuple(rng.sample(pool, rng.randint(1, 5)))  # 3 on average
        rows.append(
            (
                user_id,
                f"user_{i}",
                f"User Number {i}" if i % 3 else None,
                f"{rng.getrandbits(128):032x}" if i % 5 else None,
                i % 97 == 0,
                f"nick {i}" if i % 4 == 0 else None,
                EPOCH + datetime.timedelta(seconds=rng.randrange(200_000_000), microseconds=rng.randrange(10**6)),
                roles,
            )
        )
    return rows


def drift(rows: list[Raw], step: int = 0) -> list[Raw]:
    """1% changed (nickname or roles), 1% left, 1% joined; `step` picks other members each time, so
    that drifts applied one after the other each change 3% of the guild."""
    rng = random.Random(step)
    pool = role_ids()
    leave, change = (3 * step + 1) % 100, (3 * step + 2) % 100
    out: list[Raw] = []
    for row in rows:
        key = (row[0] // 7919) % 100
        if key == leave:
            continue
        if key == change:
            renamed = (*row[:5], f"renamed {step} {row[0]}", *row[6:])
            row = renamed if row[0] % 2 else (*row[:7], tuple(rng.sample(pool, 3)))  # noqa: PLW2901
        out.append(row)
    base = 200_000_000_000_000_000 + step * 1_000_000_000_000_000
    for j in range(len(rows) // 100):
        out.append((base + j * 7919, f"new_{step}_{j}", None, None, False, None, EPOCH, (pool[j % ROLE_POOL],)))
    return out


def snapshot(raw: list[Raw]) -> GuildSnapshot:
    """Fresh objects: no fingerprint is memoized from an earlier measurement."""
    members = {
        r[0]: MemberState(
            user_id=r[0],
            username=r[1],
            global_name=r[2],
            avatar_hash=r[3],
            is_bot=r[4],
            nickname=r[5],
            joined_at=r[6],
            role_ids=frozenset(r[7]),
        )
        for r in raw
    }
    roles = {
        rid: RoleState(role_id=rid, name=f"role {i}", color=i * 1000, position=i, permissions=1 << (i % 40))
        for i, rid in enumerate(role_ids())
    }
    return GuildSnapshot(guild_id=GUILD, members=members, roles=roles)


def rows_written(desired: GuildSnapshot) -> int:
    members = len(desired.members)
    return 2 * members + sum(len(m.role_ids) for m in desired.members.values()) + len(desired.roles)


# --- measuring ------------------------------------------------------------------------------------------


class PeakRss:
    """Samples the process RSS and CPython's live blocks every 5 ms while active.

    `.peak_mb` is the RSS rise above the start. In a process that has run a check before, freed arenas
    are reused and the RSS hardly rises: `.peak_blocks` (the rise of `sys.getallocatedblocks()`, every
    live Python object and buffer pymalloc holds) is the work's transient footprint either way, and
    what fragments the allocator's arenas when long-lived objects are allocated meanwhile.
    """

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.start = 0
        self.peak = 0
        self.start_blocks = 0
        self.max_blocks = 0
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRss:
        gc.collect()
        self.start = self.peak = self._process.memory_info().rss
        self.start_blocks = self.max_blocks = sys.getallocatedblocks()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        self.peak = max(self.peak, self._process.memory_info().rss)
        self.max_blocks = max(self.max_blocks, sys.getallocatedblocks())

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self._sample()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self._sample()

    @property
    def peak_mb(self) -> float:
        return (self.peak - self.start) / 2**20

    @property
    def peak_blocks(self) -> int:
        return self.max_blocks - self.start_blocks


@attrs.define(kw_only=True)
class Result:
    backend: str
    members: int
    scenario: str
    seconds: float
    rows: int
    peak_mb: float
    note: str = ""
    extrapolated_from: int | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else float("inf")


async def timed(label: str, work: Callable[[], Awaitable[typing.Any]]) -> tuple[float, float, typing.Any]:
    seconds, rss, value = await timed_peaks(label, work)
    return seconds, rss.peak_mb, value


async def timed_peaks(label: str, work: Callable[[], Awaitable[typing.Any]]) -> tuple[float, PeakRss, typing.Any]:
    """The work's seconds, its peaks (RSS and live blocks) and its value."""
    with PeakRss() as rss:
        start = time.perf_counter()
        value = await work()
        seconds = time.perf_counter() - start
    print(
        f"    {label}: {seconds:.2f} s, peak +{rss.peak_mb:.0f} MB, +{rss.peak_blocks / 1000:,.0f}k blocks", flush=True
    )
    return seconds, rss, value


# --- databases ------------------------------------------------------------------------------------------


def _remove_sqlite(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        pathlib.Path(f"{path}{suffix}").unlink(missing_ok=True)


def _write_json(path: str, results: list[Result]) -> None:
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(path).write_text(json.dumps([attrs.asdict(r) for r in results], indent=2))


class Databases:
    """Fresh, migrated databases for one backend."""

    def __init__(self, backend: str, workdir: pathlib.Path) -> None:
        self.backend = backend
        self.workdir = workdir
        self.count = 0
        self.schemas: list[str] = []

    async def fresh(self) -> str:
        self.count += 1
        if self.backend == "sqlite":
            url = f"sqlite+aiosqlite:///{self.workdir / f'bench{self.count}.db'}"
        else:
            schema = f"bench_{os.getpid()}_{self.count}"
            connection = await asyncpg.connect(POSTGRES_DSN)
            try:
                await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE; CREATE SCHEMA "{schema}"')
            finally:
                await connection.close()
            self.schemas.append(schema)
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
        await upgrade_database(url)
        return url

    async def drop(self, url: str) -> None:
        if self.backend == "sqlite":
            _remove_sqlite(sa.make_url(url).database or "")
            return
        schema = url.rsplit("%3D", 1)[1]
        connection = await asyncpg.connect(POSTGRES_DSN)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()
        self.schemas.remove(schema)


# --- our path -------------------------------------------------------------------------------------------


class PrebuiltGuild:
    """What the engine reads as Discord's state (hikari's cache in the bot): a snapshot built beforehand."""

    def __init__(self) -> None:
        self.current = GuildSnapshot(guild_id=GUILD, members={})

    def snapshot(self, guild_id: int, scope: Scope) -> GuildSnapshot:
        members = self.current.members
        if scope.user_ids is not None:
            members = {uid: members[uid] for uid in sorted(scope.user_ids) if uid in members}
        roles = self.current.roles if scope.roles else {}
        return GuildSnapshot(guild_id=guild_id, members=members, roles=roles, scope=scope)

    def member_ids(self, guild_id: int) -> typing.AbstractSet[int]:
        return self.current.members.keys()

    def is_ready(self, guild_id: int) -> bool:
        return True

    def ready_token(self, guild_id: int) -> int | None:
        return 1

    def member_count(self, guild_id: int) -> int:
        return len(self.current.members)


def engine(store: SqlStore, guild: PrebuiltGuild) -> Reconciler:
    """The engine as the bot builds it: a new one has no fingerprint memo (the first run after a start)."""
    return Reconciler(store=store, desired=guild, metrics=Metrics(), settings=SyncSettings())


async def reconcile(reconciler: Reconciler) -> RunReport:
    """One full run, as start-up, a role deletion or the scheduler asks for it."""
    request = SyncRequest(guild_id=GUILD, scope=Scope.everything(), trigger=Trigger.STARTUP)
    report = await reconciler.run(request)
    assert report.errors == 0, report.error_sample
    assert report.outcome.value == "success", report.reason
    return report


# --- references -----------------------------------------------------------------------------------------


def sqlite_floor(path: str, desired: GuildSnapshot, *, wal: bool = True) -> None:
    """stdlib sqlite3, one transaction, plain executemany of identical rows.

    `wal`: the store's own pragmas as its writer has them (WAL, synchronous=NORMAL, 64 MiB cache);
    else sqlite3's defaults (rollback journal, synchronous=FULL, 2 MiB cache). Foreign keys on in both,
    as in the store.
    """
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        pragmas = (*SQLITE_PRAGMAS, f"PRAGMA cache_size=-{BULK_CACHE_KIB}") if wal else ("PRAGMA journal_mode=DELETE",)
        for pragma in (*pragmas, "PRAGMA foreign_keys=ON"):
            connection.execute(pragma)
        now = sqlite_time(datetime.datetime.now(datetime.UTC))
        members = list(desired.members.values())
        connection.execute("BEGIN")
        connection.execute("INSERT INTO guilds (id, first_seen_at, updated_at) VALUES (?, ?, ?)", (GUILD, now, now))
        connection.executemany(
            "INSERT INTO roles (guild_id, role_id, name, color, position, permissions, managed, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (GUILD, r.role_id, r.name, r.color, r.position, r.permissions, r.managed, now)
                for r in desired.roles.values()
            ],
        )
        connection.executemany(
            "INSERT INTO users (id, username, global_name, avatar_hash, is_bot, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            ((m.user_id, m.username, m.global_name, m.avatar_hash, m.is_bot, now) for m in members),
        )
        connection.executemany(
            "INSERT INTO members (guild_id, user_id, nickname, joined_at, first_seen_at, status, updated_at, "
            "fingerprint) VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
            ((GUILD, m.user_id, m.nickname, sqlite_time(m.joined_at), now, now, fingerprint(m)) for m in members),
        )
        connection.executemany(
            "INSERT INTO member_roles (guild_id, user_id, role_id) VALUES (?, ?, ?)",
            ((GUILD, m.user_id, r) for m in members for r in m.role_ids),
        )
        connection.execute("COMMIT")
    finally:
        connection.close()


async def postgres_floor(schema: str, desired: GuildSnapshot) -> None:
    """asyncpg copy_records_to_table of identical rows, one transaction."""
    connection = await asyncpg.connect(POSTGRES_DSN, server_settings={"search_path": schema})
    try:
        now = datetime.datetime.now(datetime.UTC)
        members = list(desired.members.values())
        async with connection.transaction():
            await connection.execute(
                "INSERT INTO guilds (id, first_seen_at, updated_at) VALUES ($1, $2, $2)", GUILD, now
            )
            await connection.copy_records_to_table(
                "roles",
                columns=["guild_id", "role_id", "name", "color", "position", "permissions", "managed", "updated_at"],
                records=[
                    (GUILD, r.role_id, r.name, r.color, r.position, r.permissions, r.managed, now)
                    for r in desired.roles.values()
                ],
            )
            await connection.copy_records_to_table(
                "users",
                columns=["id", "username", "global_name", "avatar_hash", "is_bot", "updated_at"],
                records=((m.user_id, m.username, m.global_name, m.avatar_hash, m.is_bot, now) for m in members),
            )
            await connection.copy_records_to_table(
                "members",
                columns=[
                    "guild_id",
                    "user_id",
                    "nickname",
                    "joined_at",
                    "first_seen_at",
                    "status",
                    "updated_at",
                    "fingerprint",
                ],
                records=(
                    (GUILD, m.user_id, m.nickname, m.joined_at, now, "active", now, fingerprint(m)) for m in members
                ),
            )
            await connection.copy_records_to_table(
                "member_roles",
                columns=["guild_id", "user_id", "role_id"],
                records=((GUILD, m.user_id, r) for m in members for r in m.role_ids),
            )
    finally:
        await connection.close()


class User:
    pass


class Member:
    pass


class MemberRole:
    pass


_orm = registry()
_orm.map_imperatively(User, t.users)
_orm.map_imperatively(Member, t.members)
_orm.map_imperatively(MemberRole, t.member_roles)


async def naive(url: str, desired: GuildSnapshot, sample: int) -> int:
    """One ORM get + modify per member (and per link), commit every 25. Returns members written."""
    engine = create_engine(url)
    now = datetime.datetime.now(datetime.UTC)
    done = 0
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            guild_row = t.guilds.insert().values(id=GUILD, first_seen_at=now, updated_at=now)
            await session.execute(guild_row)
            for state in list(desired.members.values())[:sample]:
                user = await session.get(User, state.user_id)
                if user is None:
                    user = User()
                    user.id = state.user_id  # type: ignore[attr-defined]
                    session.add(user)
                for name in ("username", "global_name", "avatar_hash", "is_bot"):
                    setattr(user, name, getattr(state, name))
                user.updated_at = now  # type: ignore[attr-defined]
                member = await session.get(Member, (GUILD, state.user_id))
                if member is None:
                    member = Member()
                    member.guild_id, member.user_id = GUILD, state.user_id  # type: ignore[attr-defined]
                    member.first_seen_at = now  # type: ignore[attr-defined]
                    session.add(member)
                member.nickname = state.nickname  # type: ignore[attr-defined]
                member.joined_at = state.joined_at  # type: ignore[attr-defined]
                member.status = "active"  # type: ignore[attr-defined]
                member.updated_at = now  # type: ignore[attr-defined]
                member.fingerprint = fingerprint(state)  # type: ignore[attr-defined]
                for role_id in state.role_ids:
                    if await session.get(MemberRole, (GUILD, state.user_id, role_id)) is None:
                        link = MemberRole()
                        link.guild_id, link.user_id, link.role_id = GUILD, state.user_id, role_id  # type: ignore[attr-defined]
                        session.add(link)
                done += 1
                if done % 25 == 0:
                    await session.commit()
            await session.commit()
    finally:
        await engine.dispose()
    return done


# --- one backend, one size ------------------------------------------------------------------------------


async def run_case(backend: str, n: int, args: argparse.Namespace, workdir: pathlib.Path) -> list[Result]:
    print(f"== {backend}, {n:,} members", flush=True)
    databases = Databases(backend, workdir)
    raw = generate(n)
    results: list[Result] = []

    def record(scenario: str, seconds: float, rows: int, peak: float, **extra: typing.Any) -> Result:
        result = Result(
            backend=backend, members=n, scenario=scenario, seconds=seconds, rows=rows, peak_mb=peak, **extra
        )
        results.append(result)
        return result

    def best(scenario: str, runs: list[tuple[float, float, str]], written: int) -> Result:
        seconds, _, note = min(runs)
        others = ", ".join(f"{r[0]:.2f}" for r in runs)
        return record(scenario, seconds, written, max(r[1] for r in runs), note=f"{note} | runs: {others}")

    # floors (each on a fresh database, from fresh objects)
    rows = rows_written(snapshot(raw))
    floors: list[Result] = []
    variants = [("floor", True), ("floor, rollback journal", False)] if backend == "sqlite" else [("floor", True)]
    for label, wal in variants:
        runs: list[tuple[float, float, str]] = []
        for _ in range(args.cold_repeat):
            url = await databases.fresh()
            desired = snapshot(raw)
            if backend == "sqlite":
                path = sa.make_url(url).database or ""
                work = lambda p=path, d=desired, w=wal: asyncio.to_thread(sqlite_floor, p, d, wal=w)  # noqa: E731
            else:
                schema = url.rsplit("%3D", 1)[1]
                work = lambda s=schema, d=desired: postgres_floor(s, d)  # noqa: E731
            seconds, peak, _ = await timed(label, work)
            runs.append((seconds, peak, ""))
            await databases.drop(url)
            del desired
        floors.append(best(label, runs, rows))
    floor = min(floors, key=lambda r: r.seconds)

    # Our path, as the engine runs it: one Reconciler (and so one fingerprint memo per guild) kept between runs.
    guild = PrebuiltGuild()

    async def ours(reconciler: Reconciler, data: list[Raw]) -> tuple[float, float, str]:
        guild.current = snapshot(data)
        gc.collect()
        seconds, peak, report = await timed(f"{len(guild.current.members):,}", lambda: reconcile(reconciler))
        mark = time.perf_counter()
        await reconciler.idle()  # a memo filled after a first run: the next measurement must not share the CPU
        note = f"after the run, in the background: {time.perf_counter() - mark:.2f}"
        counts = report.counts
        note += f" | created {counts.created} updated {counts.updated} left {counts.left} unchanged {counts.unchanged}"
        print(f"      {note}", flush=True)
        return seconds, peak, note

    cold_runs: list[tuple[float, float, str]] = []
    url = ""
    store: SqlStore | None = None
    try:
        for attempt in range(args.cold_repeat):
            if store is not None:
                await store.close()
                await databases.drop(url)
            url = await databases.fresh()
            store = await SqlStore.open(url, batch_size=args.batch_size)
            print(f"    cold #{attempt + 1}", flush=True)
            cold_runs.append(await ours(engine(store, guild), raw))
        assert store is not None
        best("cold", cold_runs, rows)
        steady = engine(store, guild)
        first_runs: list[tuple[float, float, str]] = []
        for attempt in range(args.repeat):
            print(f"    no-change, first #{attempt + 1} (a new engine: no memo yet)", flush=True)
            first_runs.append(await ours(engine(store, guild) if attempt else steady, raw))
        best("no-change, first", first_runs, n)
        steady_runs: list[tuple[float, float, str]] = []
        for attempt in range(args.repeat):
            print(f"    no-change #{attempt + 1} (memo from the previous run)", flush=True)
            steady_runs.append(await ours(steady, raw))
        best("no-change", steady_runs, n)
        drift_runs: list[tuple[float, float, str]] = []
        data = raw
        for step in range(args.repeat):
            data = drift(data, step)
            print(f"    drift #{step + 1} (1% changed, 1% left, 1% joined)", flush=True)
            drift_runs.append(await ours(steady, data))
        best("drift", drift_runs, len(data))
    finally:
        if store is not None:
            await store.close()
            await databases.drop(url)

    # naive
    if args.naive_sample:
        sample = min(n, args.naive_sample)
        desired = snapshot(raw)
        url = await databases.fresh()
        seconds, peak, written = await timed(f"naive ({sample:,} members)", lambda: naive(url, desired, sample))
        scale = n / written
        record(
            "naive",
            seconds * scale,
            rows,
            peak,
            extrapolated_from=written if written < n else None,
        )
        await databases.drop(url)
        del desired

    cold = next(r for r in results if r.scenario == "cold")
    print(f"    cold / floor = {cold.seconds / floor.seconds:.2f}x", flush=True)
    return results


def table(results: list[Result]) -> str:
    lines = [
        "| backend | members | scenario | seconds | rows/s | peak RSS (MB) | ratio |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for r in results:
        same = [x for x in results if x.backend == r.backend and x.members == r.members]
        floors = [x for x in same if x.scenario.startswith("floor")]
        floor = min(floors, key=lambda x: x.seconds) if floors else None
        cold = next((x for x in same if x.scenario == "cold"), None)
        ratio = ""
        if r.scenario == "cold" and floor:
            ratio = f"{r.seconds / floor.seconds:.2f}x floor"
        elif r.scenario == "naive" and cold:
            ratio = f"ours {r.seconds / cold.seconds:.0f}x faster"
        seconds = f"{r.seconds:,.2f}"
        if r.extrapolated_from:
            seconds += f" (extrapolated from {r.extrapolated_from:,})"
        lines.append(
            f"| {r.backend} | {r.members:,} | {r.scenario} | {seconds} | {r.rows_per_second:,.0f} "
            f"| {r.peak_mb:,.0f} | {ratio} |"
        )
    return "\n".join(lines)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated member counts")
    parser.add_argument("--backends", default="sqlite,postgresql", help="sqlite and/or postgresql")
    parser.add_argument("--batch-size", type=int, default=1000, help="Store batch size (the setting's default)")
    parser.add_argument(
        "--naive-sample", type=int, default=20000, help="members written by the naive reference (0: skip)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each no-change / drift (best is kept)")
    parser.add_argument("--cold-repeat", type=int, default=1, help="runs of each floor and cold sync")
    parser.add_argument("--workdir", default=None, help="where SQLite files go (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    backends = [b for b in args.backends.split(",") if b]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        for n in sizes:
            for backend in backends:
                results.extend(await run_case(backend, n, args, pathlib.Path(workdir)))
    print()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, batch size {args.batch_size}")
    print(table(results))
    if args.json:
        _write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
