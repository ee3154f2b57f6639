"""Soak: the real bot for N minutes against a churning guild and a seeded schedule of faults.

`reconciler run` runs as a child process (as in production) against the sandbox, which runs here, and a
real database: SQLite by default, PostgreSQL with --database (a schema of its own, dropped after). The
schedules are compressed: a drift check every 5 s, relist and cleanup every minute, a count audit every
30 s (when the bot has one). Members join, leave, change roles and nicknames and post messages all
along, while faults come one at a time: database outages of 5-30 s, non-resumable sessions, RECONNECTs,
RATE_LIMITED member requests, events dropped by a paused gateway, kill -9 and a restart.

After each fault the traffic stops and the soak waits for a quiescent point (queue empty, no run in
progress, the guild ready, from /metrics), then compares the database with the sandbox: every member,
user, role and link, departed members marked left. It prints faults by kind, time to converge after
each, the bot's RSS (start, after warm-up, end, slope), `sync_runs` and `scheduler_slots` rows over
time, and messages posted vs counted; the exit code is 1 when a target is missed (`targets()`).

    .venv/bin/python bench/soak.py [--minutes 30] [--members 50000] [--seed 1] [--rate 20]
                                   [--database postgresql+asyncpg://postgres@127.0.0.1:5432/test]
                                   [--require-exact-activity] [--json FILE] [--keep]

Settings the bot may not have yet (retention of bookkeeping rows, the count audit) are set only when
its settings model has them; the output says which were unavailable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import pathlib
import random
import re
import shutil
import sys
import tempfile
import time
import typing

import aiohttp
import psutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sqlalchemy as sa  # noqa: E402
from soak_checks import (  # noqa: E402
    LogFinding,
    ReplicaCheck,
    RssSample,
    check_replica,
    growth_after,
    percentile,
    scan_log,
    slope_mb_per_hour,
)
from soak_environment import (  # noqa: E402
    OPTIONAL_SETTINGS,
    RETENTION_MINUTES,
    Churn,
    activity_is_exact,
    setting_names,
    soak_database,
)
from soak_faults import EXPECTED_NOISE, SHUTDOWN, DatabaseOutage, FaultKind, FaultPlan, FaultSchedule  # noqa: E402

from reconciler.demo.replica import ReplicaView  # noqa: E402
from reconciler.demo.traffic import MEMBER_CHANGES, Traffic  # noqa: E402
from reconciler.harness import BotProcess, bot_environment  # noqa: E402
from reconciler.sandbox import DiscordSandbox  # noqa: E402

DRIFT_CHECK_SECONDS: typing.Final = 5.0
EVERY_MINUTE: typing.Final = "* * * * *"
MEMBER_REQUEST_WINDOW_S: typing.Final = 5.0
"""Discord's 30 s between full member requests, compressed like the schedules (relist every minute)."""
POLL_S: typing.Final = 0.5
SLACK_S: typing.Final = 3.0
"""Added to every convergence bound: the poll interval and one /metrics scrape plus one comparison."""
RSS_GROWTH_TARGET: typing.Final = 0.05
RSS_JUDGED_AFTER_S: typing.Final = 300.0
"""Memory is judged only when the bot's last life ran this long after its warm-up."""
_RELIST_DURATION: typing.Final = re.compile(
    r'event="scheduled job finished" job=relist outcome=success .*duration_s=([0-9.]+)'
)
ROWS_JUDGED_AFTER_MINUTES: typing.Final = 3 * (RETENTION_MINUTES + 1)
"""Bookkeeping rows are judged only on runs long enough for retention to have applied twice."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SoakOptions:
    minutes: float = 30.0
    members: int = 50_000
    seed: int = 1
    database: str | None = None
    rate: float = 20.0
    """Changes per second on the guild while traffic runs (about half are messages)."""
    require_exact_activity: bool = False
    json_path: pathlib.Path | None = None
    keep: bool = False


# -- records ------------------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True, kw_only=True)
class Cycle:
    """Traffic, at most one fault, then a quiescent check."""

    fault: FaultKind | None
    seconds: float
    started_at: datetime.datetime
    ended_at: datetime.datetime
    bound: float
    converged_after: float | None
    check: str
    exact: bool

    @property
    def in_time(self) -> bool:
        return self.converged_after is not None and self.converged_after <= self.bound


@dataclasses.dataclass(slots=True, kw_only=True)
class Target:
    name: str
    met: bool | None
    """None: not judged on this run (the output says why)."""
    detail: str


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def seconds_to_next_minute() -> float:
    now = time.time()
    return 60.0 - now % 60.0


class Soak:
    """One soak run: the sandbox, the bot process, the churn, the faults and every measurement."""

    def __init__(self, options: SoakOptions, work_dir: pathlib.Path) -> None:
        self.options = options
        self.work_dir = work_dir
        self.rng = random.Random(options.seed)
        self.names = setting_names()
        self.settings_used = {name: env for name, env in OPTIONAL_SETTINGS.items() if name in self.names}
        self.settings_missing = sorted(set(OPTIONAL_SETTINGS) - set(self.settings_used))
        self.exact_activity = options.require_exact_activity or activity_is_exact(self.names)
        self.cycles: list[Cycle] = []
        self.rss: list[RssSample] = []
        self.rows: list[tuple[float, dict[str, int]]] = []
        self.life = 0
        self.life_started: list[float] = []
        self.seen: frozenset[int] = frozenset()
        self.started = time.monotonic()
        self.startup_seconds = 0.0
        self.warm_at = 0.0
        self.stop_status: int | None = None
        self.messages_posted = 0
        self.messages_counted = 0
        self.log_findings: list[LogFinding] = []
        self.database = ""
        self.log_path = work_dir / "bot.log"
        self.rss_start: int | None = None
        self.rss_warm: int | None = None
        self.rss_end: int | None = None
        self.full_seconds_end = 0.0
        self.outage: DatabaseOutage | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # -- probes -----------------------------------------------------------------------------------------

    async def quiet(self, bot: BotProcess, guild_id: int) -> bool:
        """Queue empty, no run in progress, the guild ready: what /metrics says."""
        if not bot.alive:
            return False
        try:
            scrape = await bot.scrape()
        except (aiohttp.ClientError, AssertionError, OSError):
            return False
        return (
            scrape.value("reconciler_queue_depth") == 0
            and scrape.value("reconciler_runs_in_progress") == 0
            and scrape.value("reconciler_guild_ready", guild=str(guild_id)) == 1
        )

    async def converge(
        self, bot: BotProcess, view: ReplicaView, sandbox: DiscordSandbox, guild_id: int, *, give_up: float
    ) -> tuple[float | None, ReplicaCheck | None]:
        """Seconds until a quiescent point where the replica is exact (None: not within `give_up`)."""
        started = time.monotonic()
        last: ReplicaCheck | None = None
        while True:
            if await self.quiet(bot, guild_id):
                last = await check_replica(view, sandbox, guild_id, seen=self.seen)
                if last.exact and await self.quiet(bot, guild_id):
                    self.seen = self.seen | last.present
                    return time.monotonic() - started, last
            if time.monotonic() - started > give_up:
                return None, last
            await asyncio.sleep(POLL_S)

    async def sample_rss(self, bot: BotProcess) -> None:
        while True:
            if bot.alive:
                with contextlib.suppress(psutil.Error):
                    rss = psutil.Process(bot.pid).memory_info().rss
                    self.rss.append(RssSample(at=self.elapsed(), life=self.life, rss=rss))
            await asyncio.sleep(2.0)

    async def sample_rows(self, view: ReplicaView) -> None:
        while True:
            with contextlib.suppress(sa.exc.SQLAlchemyError, OSError):
                self.rows.append((self.elapsed(), await view.bookkeeping_rows()))
            await asyncio.sleep(15.0)

    def rss_now(self) -> int | None:
        return self.rss[-1].rss if self.rss else None

    # -- faults -----------------------------------------------------------------------------------------

    async def inject(
        self, plan: FaultPlan, bot: BotProcess, sandbox: DiscordSandbox, churn: Churn, outage: DatabaseOutage
    ) -> None:
        """Break the world for `plan.seconds` (traffic keeps going), then mend it."""
        kind = plan.kind
        if kind is FaultKind.DATABASE_OUTAGE:
            await outage.begin()
            await asyncio.sleep(plan.seconds)
            await outage.end()
        elif kind is FaultKind.INVALID_SESSION:
            await sandbox.disconnect(resumable=False)
        elif kind is FaultKind.RECONNECT:
            await sandbox.reconnect_request()
        elif kind is FaultKind.RATE_LIMITED:
            sandbox.faults.rate_limit_member_requests = True
            await sandbox.disconnect(resumable=False)
            await asyncio.sleep(plan.seconds)
            sandbox.faults.rate_limit_member_requests = False
        elif kind is FaultKind.EVENTS_DROPPED:
            # Role edits are left out: no relist brings a lost role edit back (the next GUILD_CREATE does).
            # Messages too: this fault is Discord not delivering events inside a live session, and the live
            # path vouches for the ids between two messages of one session (README, activity limits), so a
            # MESSAGE_CREATE lost this way is never counted. Exactly-once is judged through kill -9,
            # outages and lost sessions, where the backfill fetches what the bot did not see.
            churn.kinds = frozenset(MEMBER_CHANGES)
            await sandbox.pause()
            await asyncio.sleep(plan.seconds)
            await sandbox.resume()
            churn.kinds = None
        else:
            await bot.kill()
            await asyncio.sleep(plan.seconds)
            self.life += 1
            self.life_started.append(self.elapsed())
            await bot.start()

    def full_run_seconds(self, bot: BotProcess) -> float:
        """The time of a full sync on this machine now: the start-up sync measured at warm-up, or the
        longest relist so far (the member list fetched again and applied), whichever is longer."""
        relists = [float(d) for d in _RELIST_DURATION.findall(bot.log())]
        return max([self.startup_seconds, *relists])

    def bound(self, kind: FaultKind | None, ended: float, full: float) -> float:
        """Longest a fault may take to converge: one drift interval plus the run that repairs it (`full`),
        plus what the repair waits for: a member-request window where the member list is asked for again,
        the next relist for dropped events."""
        if kind in {None, FaultKind.DATABASE_OUTAGE, FaultKind.RECONNECT}:
            return DRIFT_CHECK_SECONDS + full + SLACK_S
        if kind is not FaultKind.EVENTS_DROPPED:
            return DRIFT_CHECK_SECONDS + MEMBER_REQUEST_WINDOW_S + full + SLACK_S
        # Dropped events: the relist fires on the next minute after the gateway resumed.
        return (60.0 - ended % 60.0) + MEMBER_REQUEST_WINDOW_S + DRIFT_CHECK_SECONDS + full + SLACK_S

    # -- the run ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        options = self.options
        async with contextlib.AsyncExitStack() as stack:
            sandbox = await stack.enter_async_context(DiscordSandbox())
            sandbox.faults.member_request_window_s = MEMBER_REQUEST_WINDOW_S
            guild_id = sandbox.create_guild(name="Soak", members=options.members, roles=12, seed=options.seed)
            database = await stack.enter_async_context(soak_database(options.database, self.work_dir))
            self.database = database.describe
            self.outage = database.outage
            view = ReplicaView(database.view_url)
            stack.push_async_callback(view.close)
            env = bot_environment(
                sandbox,
                database.bot_url,
                SCHEDULE__ENABLED="true",
                SCHEDULE__DRIFT_CHECK_SECONDS=str(DRIFT_CHECK_SECONDS),
                SCHEDULE__DRIFT_CHECK_JITTER_SECONDS="0",
                SCHEDULE__RELIST_CRON=EVERY_MINUTE,
                SCHEDULE__CLEANUP_CRON=EVERY_MINUTE,
                SCHEDULE__MISFIRE_GRACE_SECONDS="30",
                SYNC__ACTIVITY_FLUSH_SECONDS="1",
                SYNC__RETRY_BASE_SECONDS="0.5",
                SYNC__RETRY_MAX_SECONDS="5",
                **dict(self.settings_used.values()),
            )
            bot = BotProcess(env, cwd=self.work_dir, log_path=self.log_path)
            stack.push_async_callback(bot.close)
            traffic = Traffic(sandbox, guild_id, self.rng)
            churn = Churn(traffic, sandbox, options.rate)
            # Faults last at most a tenth of the run (5 s at least): a one-minute soak still fits every kind.
            schedule = FaultSchedule(self.rng, longest=max(5.0, options.minutes * 6))
            tasks = [asyncio.create_task(churn.run())]
            stack.callback(lambda: [t.cancel() for t in tasks])

            self.life_started.append(self.elapsed())
            await bot.start()
            tasks.append(asyncio.create_task(self.sample_rss(bot)))
            took, check = await self.converge(bot, view, sandbox, guild_id, give_up=900.0)
            if took is None:
                raise SystemExit(f"the start-up sync never converged ({check and check.describe()}):\n{bot.tail()}")
            self.startup_seconds = took
            self.rss_start = self.rss_now()
            print(f"[{self.elapsed():6.1f}s] start-up sync of {options.members:,} members converged in {took:.1f} s")
            tasks.append(asyncio.create_task(self.sample_rows(view)))

            # The run's length counts from the soak's start; its first tenth (5 s to 3 min) warms the bot up.
            total = options.minutes * 60.0
            warm_up = min(180.0, max(5.0, total * 0.1))
            await self.cycle(None, warm_up, bot=bot, view=view, sandbox=sandbox, guild_id=guild_id, churn=churn)
            self.warm_at = self.elapsed()
            self.rss_warm = self.rss_now()
            # Every kind of fault at least once, even if that takes a short run past its length.
            while (spent := self.elapsed()) < total or set(FaultKind) - {c.fault for c in self.cycles}:
                # Kills stop after the first third so that the last life is long enough to judge memory
                # (5 minutes after its warm-up in a 10-minute run); a run too short for that still gets one.
                kills_allowed = spent < total / 3 or self.life == 0
                # Dropped events cost a wait for the relist: not at the very end, unless the run has had none.
                had_dropped = any(c.fault is FaultKind.EVENTS_DROPPED for c in self.cycles)
                plan = schedule.next(
                    kills_allowed=kills_allowed,
                    relist_in=seconds_to_next_minute() - 2.0,
                    time_left=total - spent if had_dropped else None,
                )
                await self.cycle(
                    plan,
                    self.rng.uniform(0.5, 2.0),
                    bot=bot,
                    view=view,
                    sandbox=sandbox,
                    guild_id=guild_id,
                    churn=churn,
                )
            self.rss_end = self.rss_now()
            self.full_seconds_end = self.full_run_seconds(bot)
            tasks[-1].cancel()  # the row sampler: the last sample is taken here
            self.rows.append((self.elapsed(), await view.bookkeeping_rows()))
            self.messages_posted = traffic.counts.messages
            stop_from = _now()
            self.stop_status = await bot.terminate(timeout=60.0)
            stop_to = _now()
            self.messages_counted = await view.messages(guild_id)
            self.log_findings = scan_log(
                bot.log(),
                windows=[
                    (
                        c.fault.value,
                        c.started_at,
                        c.ended_at + datetime.timedelta(seconds=(c.converged_after or c.bound)),
                    )
                    for c in self.cycles
                    if c.fault is not None
                ]
                + [(SHUTDOWN, stop_from, stop_to)],
                expected=EXPECTED_NOISE,
            )

    async def cycle(
        self,
        plan: FaultPlan | None,
        lead_in: float,
        *,
        bot: BotProcess,
        view: ReplicaView,
        sandbox: DiscordSandbox,
        guild_id: int,
        churn: Churn,
    ) -> None:
        churn.start()
        await asyncio.sleep(lead_in)
        started_at = _now()
        if plan is not None:
            assert self.outage is not None
            await self.inject(plan, bot, sandbox, churn, self.outage)
        ended_at = _now()
        ended_wall = time.time()
        await asyncio.sleep(0.5)  # traffic after the fault, too
        await churn.stop()
        kind = plan.kind if plan else None
        give_up = max(2 * self.bound(kind, ended_wall, self.full_run_seconds(bot)), 60.0)
        took, check = await self.converge(bot, view, sandbox, guild_id, give_up=give_up)
        # Judged with the full sync's time as it is now: a repair that ran on a loaded machine counts as such.
        bound = self.bound(kind, ended_wall, self.full_run_seconds(bot))
        # Measured from the moment the world was whole again, not from the traffic's stop.
        after = None if took is None else time.time() - ended_wall
        cycle = Cycle(
            fault=kind,
            seconds=plan.seconds if plan else 0.0,
            started_at=started_at,
            ended_at=ended_at,
            bound=bound,
            converged_after=after,
            check=check.describe() if check else "no quiescent point",
            exact=took is not None,
        )
        self.cycles.append(cycle)
        label = kind.value if kind else "traffic only"
        verdict = "ok" if cycle.in_time else "MISSED"
        took_text = f"{after:.1f} s" if after is not None else "never"
        print(
            f"[{self.elapsed():6.1f}s] {label:<16} {cycle.seconds:4.1f} s  converged {took_text} (bound {bound:.1f} s)"
            f"  replica: {cycle.check}  {verdict}",
            flush=True,
        )


# -- the verdict --------------------------------------------------------------------------------------


def _mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 1e6:.1f} MB"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def targets(soak: Soak) -> list[Target]:
    options = soak.options
    found: list[Target] = []
    inexact = [c for c in soak.cycles if not c.exact]
    found.append(
        Target(
            name="every quiescent check exact",
            met=not inexact,
            detail=f"{len(soak.cycles) - len(inexact)}/{len(soak.cycles)} exact"
            + "".join(f"; {c.fault.value if c.fault else 'traffic'}: {c.check}" for c in inexact[:5]),
        )
    )
    late = [c for c in soak.cycles if c.exact and not c.in_time]
    found.append(
        Target(
            name="convergence within one drift interval plus the repairing run",
            met=not late,
            detail=f"{len(late)} late"
            + "".join(
                f"; {c.fault.value if c.fault else 'traffic'} {c.converged_after:.1f} s > {c.bound:.1f} s"
                for c in late[:5]
                if c.converged_after is not None
            ),
        )
    )
    last_life = [s for s in soak.rss if s.life == soak.life]
    life_start = soak.life_started[-1] if soak.life_started else 0.0
    warm_from = max(soak.warm_at, life_start + (soak.warm_at - soak.life_started[0] if soak.life_started else 0.0))
    judged = [s for s in last_life if s.at >= warm_from]
    growth = growth_after(judged)
    span = judged[-1].at - judged[0].at if len(judged) > 1 else 0.0
    if growth is None or span < RSS_JUDGED_AFTER_S:
        found.append(
            Target(
                name="RSS grows at most 5 % after warm-up",
                met=None,
                detail=f"not judged: the bot's last life ran {span:.0f} s after warm-up (< {RSS_JUDGED_AFTER_S:.0f} s)"
                + (f"; growth {growth:+.1%}" if growth is not None else ""),
            )
        )
    else:
        found.append(
            Target(
                name="RSS grows at most 5 % after warm-up",
                met=growth <= RSS_GROWTH_TARGET,
                detail=f"{growth:+.1%} over {span / 60:.1f} min of the bot's last life",
            )
        )
    retention = {"retention.sync_runs_days", "retention.scheduler_slots_days"} <= set(soak.settings_used)
    if not retention:
        found.append(Target(name="bookkeeping rows stop growing", met=None, detail="not judged: no retention settings"))
    elif options.minutes < ROWS_JUDGED_AFTER_MINUTES:
        found.append(
            Target(
                name="bookkeeping rows stop growing",
                met=None,
                detail=f"not judged: run shorter than {ROWS_JUDGED_AFTER_MINUTES:.0f} min",
            )
        )
    else:
        end = soak.rows[-1][0]
        third = (end - soak.warm_at) / 3
        middle = [r for at, r in soak.rows if soak.warm_at + third <= at < soak.warm_at + 2 * third]
        last = [r for at, r in soak.rows if at >= soak.warm_at + 2 * third]
        worse: list[str] = []
        for table in ("sync_runs", "scheduler_slots"):
            ceiling = max((r[table] for r in middle), default=0)
            peak = max((r[table] for r in last), default=0)
            # Steady state: the last third's peak within 10 % (plus one cleanup's worth of slack) of the middle's.
            if peak > ceiling * 1.1 + 20:
                worse.append(f"{table} {ceiling} -> {peak}")
        found.append(
            Target(
                name="bookkeeping rows stop growing",
                met=not worse,
                detail="; ".join(worse) or "last third's peak within 10 % of the middle third's",
            )
        )
    unexpected = [f for f in soak.log_findings if f.explained_by is None]
    found.append(
        Target(
            name="no unexpected error in the bot's log",
            met=not unexpected,
            detail=f"{len(unexpected)} unexpected, {len(soak.log_findings) - len(unexpected)} explained by a fault"
            + "".join(f"\n      {f.line[:300]}" for f in unexpected[:5]),
        )
    )
    found.append(
        Target(name="orderly stop on SIGTERM", met=soak.stop_status == 0, detail=f"exit status {soak.stop_status}")
    )
    activity = f"{soak.messages_posted:,} posted, {soak.messages_counted:,} counted"
    if soak.exact_activity:
        found.append(
            Target(
                name="messages counted exactly once",
                met=soak.messages_posted == soak.messages_counted,
                detail=activity,
            )
        )
    else:
        found.append(
            Target(
                name="messages counted exactly once",
                met=None,
                detail=f"reported only ({activity}): exactly-once counting is not in this bot"
                " (--require-exact-activity makes it a target)",
            )
        )
    return found


def render(soak: Soak, found: list[Target]) -> str:
    options = soak.options
    lines = [
        "",
        f"== Soak: {options.minutes:g} min, {options.members:,} members, seed {options.seed}, {soak.database}",
        f"settings unavailable in this bot: {', '.join(soak.settings_missing) or 'none'}",
        f"exactly-once activity: {'required' if soak.exact_activity else 'not required'}",
        f"start-up sync: {soak.startup_seconds:.1f} s; longest full sync (start-up or relist)"
        f" {soak.full_seconds_end:.1f} s; drift check every {DRIFT_CHECK_SECONDS:g} s;"
        f" relist and cleanup every minute; bot log {soak.log_path}",
        "",
        "faults injected, by kind, and time to converge after each (from the end of the fault):",
    ]
    kinds: list[FaultKind | None] = [None, *FaultKind]
    for kind in kinds:
        cycles = [c for c in soak.cycles if c.fault is kind]
        if not cycles:
            continue
        times = [c.converged_after for c in cycles if c.converged_after is not None]
        label = kind.value if kind else "(traffic only)"
        lines.append(
            f"  {label:<18} {len(cycles):3d}  converge max {_seconds(max(times, default=None))}"
            f"  p50 {_seconds(percentile(times, 0.5))}  bound max {max(c.bound for c in cycles):.1f} s"
            f"  late {sum(1 for c in cycles if not c.in_time)}"
        )
    last_life = [s for s in soak.rss if s.life == soak.life and s.at >= soak.warm_at]
    slope = slope_mb_per_hour(last_life)
    lines += [
        "",
        f"bot RSS: start {_mb(soak.rss_start)}, after warm-up {_mb(soak.rss_warm)}, end {_mb(soak.rss_end)};"
        f" slope {'n/a' if slope is None else f'{slope:+.1f} MB/hour'} (last life, after warm-up);"
        f" {soak.life} restart(s)",
        "bookkeeping rows over time (s: sync_runs / scheduler_slots):",
    ]
    step = max(1, len(soak.rows) // 12)
    picked = soak.rows[::step] + ([soak.rows[-1]] if soak.rows and (len(soak.rows) - 1) % step else [])
    lines.append("  " + "  ".join(f"{at:.0f}s: {r['sync_runs']}/{r['scheduler_slots']}" for at, r in picked))
    lines += [
        f"messages: {soak.messages_posted:,} posted, {soak.messages_counted:,} counted",
        "",
        "targets:",
    ]
    for target in found:
        mark = {True: "PASS", False: "FAIL", None: "----"}[target.met]
        lines.append(f"  {mark}  {target.name}: {target.detail}")
    return "\n".join(lines)


def figures(soak: Soak, found: list[Target]) -> dict[str, typing.Any]:
    return {
        "options": {
            k: str(v) if isinstance(v, pathlib.Path) else v for k, v in dataclasses.asdict(soak.options).items()
        },
        "database": soak.database,
        "settings_unavailable": soak.settings_missing,
        "startup_seconds": soak.startup_seconds,
        "longest_full_sync_seconds": soak.full_seconds_end,
        "cycles": [
            {
                "fault": c.fault.value if c.fault else None,
                "seconds": c.seconds,
                "bound": round(c.bound, 2),
                "converged_after": None if c.converged_after is None else round(c.converged_after, 2),
                "check": c.check,
            }
            for c in soak.cycles
        ],
        "rss": {"start": soak.rss_start, "warm": soak.rss_warm, "end": soak.rss_end, "restarts": soak.life},
        # One sample in fifteen (about every 30 s): seconds, life, MB.
        "rss_samples": [(round(r.at), r.life, round(r.rss / 1e6, 1)) for r in soak.rss[::15]],
        "rows": [{"at": round(at, 1), **r} for at, r in soak.rows],
        "messages": {"posted": soak.messages_posted, "counted": soak.messages_counted},
        "targets": [dataclasses.asdict(t) for t in found],
    }


async def soak_main(options: SoakOptions) -> int:
    """Run one soak, print the verdict; 0 when every judged target is met."""
    work_dir = pathlib.Path(tempfile.mkdtemp(prefix="soak-"))
    soak = Soak(options, work_dir)
    print(
        f"soak: {options.minutes:g} min, {options.members:,} members, seed {options.seed}; work dir {work_dir};"
        f" settings unavailable: {', '.join(soak.settings_missing) or 'none'}",
        flush=True,
    )
    try:
        await soak.run()
        found = targets(soak)
        print(render(soak, found), flush=True)
        if options.json_path is not None:
            options.json_path.write_text(json.dumps(figures(soak, found), indent=2, default=str), encoding="utf-8")
        failed = [t for t in found if t.met is False]
    except BaseException:
        print(f"soak aborted; bot log kept in {soak.log_path}", flush=True)
        raise
    if failed or options.keep:
        print(f"work dir kept: {work_dir}")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 1 if failed else 0


def parse_options(argv: list[str] | None = None) -> SoakOptions:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--minutes",
        type=float,
        default=30.0,
        help="length of the run, start-up and warm-up included (default 30)",
    )
    parser.add_argument("--members", type=int, default=50_000, help="members of the guild (default 50,000)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the guild, the churn and the faults")
    parser.add_argument("--database", help="postgresql+asyncpg://... (a fresh schema, dropped after); default SQLite")
    parser.add_argument("--rate", type=float, default=20.0, help="changes per second while traffic runs")
    parser.add_argument("--require-exact-activity", action="store_true", help="messages counted must equal posted")
    parser.add_argument("--json", type=pathlib.Path, help="also write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (bot log, SQLite file)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.members < 100 or args.rate <= 0:
        parser.error("--minutes and --rate must be positive and --members at least 100")
    return SoakOptions(
        minutes=args.minutes,
        members=args.members,
        seed=args.seed,
        database=args.database,
        rate=args.rate,
        require_exact_activity=args.require_exact_activity,
        json_path=args.json,
        keep=args.keep,
    )


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(soak_main(parse_options(argv)))


if __name__ == "__main__":
    sys.exit(main())
