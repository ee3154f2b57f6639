"""The show: the steps `reconciler demo` plays against the running bot, one section each, then the verdict.

Each step changes the server or the database the way life would (traffic, an operator's hand in the
tables, events lost on the way), says what it did, and waits for the bot's own machinery (gateway
listeners, the scheduled drift check, the relist, `/sync`) to bring the database back to the truth.
"""

from __future__ import annotations

__all__ = ["Show", "collect_summary", "play"]

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import time
import typing

import aiohttp

from reconciler.demo.summary import DemoSummary, compare_with_truth
from reconciler.demo.terminal import embed_lines
from reconciler.demo.traffic import MEMBER_CHANGES, TrafficCounts
from reconciler.domain.wording import counted
from reconciler.engine.drift import measure_drift
from reconciler.engine.planning import GuildNotReadyError
from reconciler.observability.metrics import ERROR_STAGES
from reconciler.scheduling import DRIFT_CHECK, RELIST

if typing.TYPE_CHECKING:
    import random
    from collections.abc import Awaitable, Callable, Sequence

    from reconciler.app import App
    from reconciler.demo.replica import ReplicaView
    from reconciler.demo.summary import TruthDiff
    from reconciler.demo.terminal import Terminal
    from reconciler.demo.traffic import Traffic
    from reconciler.domain.health import DriftCounts
    from reconciler.sandbox import DiscordSandbox
    from reconciler.scheduling import Scheduler
    from reconciler.store.api import SyncRun

T = typing.TypeVar("T")

_LOGGER: typing.Final = logging.getLogger(__name__)

_POLL: typing.Final = 0.1
_STARTUP_TIMEOUT: typing.Final = 90.0
_CONVERGE_TIMEOUT: typing.Final = 15.0
_REPLY_TIMEOUT: typing.Final = 15.0
_TRAFFIC_RATE: typing.Final = 40.0
"""Changes a second while the server is busy."""
_SCRIPTED_SECONDS: typing.Final = 9.0
"""About what the tampering, lost-events and /sync steps take together (time kept back for them)."""
_SETTLE_SECONDS: typing.Final = 2.0


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(kw_only=True)
class Show:
    """Everything the steps share: the running bot, the server, the database seen from outside."""

    app: App
    sandbox: DiscordSandbox
    guild_id: int
    terminal: Terminal
    replica: ReplicaView
    traffic: Traffic
    rng: random.Random
    duration: float
    metrics_url: str | None
    started: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def remaining(self) -> float:
        return self.duration - (time.monotonic() - self.started)

    @property
    def scheduler(self) -> Scheduler:
        if self.app.scheduler is None:
            msg = "the demo needs the scheduler (schedule.enabled)"
            raise RuntimeError(msg)
        return self.app.scheduler


async def _until(probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], *, within: float) -> tuple[T, bool]:
    """Poll `probe` until `accept` holds or `within` seconds pass; the last value and whether it held."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if accept(value):
            return value, True
        if time.monotonic() > deadline:
            return value, False
        await asyncio.sleep(_POLL)


async def truth_diff(show: Show) -> TruthDiff:
    """The database against the sandbox's ground truth, read with plain SQL."""
    gid = show.guild_id
    return compare_with_truth(
        members=show.sandbox.members(gid),
        roles=show.sandbox.roles(gid),
        rows=await show.replica.present_members(gid),
        links=await show.replica.links(gid),
        stored_roles=await show.replica.roles(gid),
    )


async def plan_drift(show: Show) -> DriftCounts | None:
    """What the drift check would find now (the bot's cache against the database); None while loading."""
    app = show.app
    try:
        report = await measure_drift(
            show.guild_id,
            desired=app.reader,
            store=app.store,
            guild_lock=app.reconciler.guild_lock,
            now=datetime.datetime.now(datetime.UTC),
        )
    except GuildNotReadyError:
        return None
    return report.drift


async def _converged(show: Show, within: float) -> tuple[TruthDiff, bool]:
    """Wait until the database equals the server (every event handled, nothing queued)."""
    await show.sandbox.flush()

    async def probe() -> TruthDiff:
        return await truth_diff(show)

    return await _until(
        probe,
        lambda diff: diff.total == 0 and not show.app.queue.depth and not show.app.queue.busy,
        within=within,
    )


async def scrape(show: Show, prefixes: Sequence[str]) -> list[str]:
    """Lines of the bot's own /metrics endpoint (over HTTP, as Prometheus reads it) that start with a prefix."""
    if show.metrics_url is None:
        return []
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{show.metrics_url}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as response,
        ):
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return [f"(metrics unavailable: {exc})"]
    return [line for line in text.splitlines() if line.startswith(tuple(prefixes))]


def _nonzero(lines: Sequence[str]) -> list[str]:
    return [line for line in lines if not line.endswith((" 0.0", " 0"))]


# -- 1. start-up -------------------------------------------------------------------------------------


async def initial_sync(show: Show) -> None:
    """Chunking into the bot's cache, then the start-up reconcile into the database, with a progress bar."""
    app, gid, term = show.app, show.guild_id, show.terminal
    expected = show.sandbox.member_count(gid)
    term.heading(1, f"Start-up: Discord sends {expected:,} members, the bot writes them down")
    started = time.monotonic()
    deadline = started + _STARTUP_TIMEOUT
    chunked_at: float | None = None
    while time.monotonic() < deadline:
        progress = app.readiness.progress(gid)
        if progress is None:
            term.progress("gateway", 0, 1, "waiting for GUILD_CREATE")
        elif not progress.ready:
            term.progress(
                "chunks",
                progress.chunks_received,
                progress.chunk_count or 1,
                f"{progress.chunks_received}/{progress.chunk_count or '?'} member chunks · "
                f"{app.reader.member_count(gid):,} members in the bot's cache",
            )
        else:
            if chunked_at is None:
                chunked_at = time.monotonic()
                term.progress("chunks", 1, 1, f"{app.reader.member_count(gid):,} members in the bot's cache")
                term.end_progress()
            running = app.queue.running(gid)
            if running is not None and running.total:
                term.progress("database", running.done, running.total, f"{running.done:,}/{running.total:,} members")
            stats = await app.store.stats(gid, now=_utcnow())
            if stats.last_reconciled_at is not None and not app.queue.depth and not app.queue.busy:
                term.progress("database", 1, 1, f"{stats.present_members:,} members written")
                term.end_progress()
                break
        await asyncio.sleep(0.05)
    else:
        term.end_progress()
        term.problem(f"start-up did not finish within {_STARTUP_TIMEOUT:.0f} s")
        return
    chunks = app.readiness.progress(gid)
    run = (await app.store.last_runs(gid)).get("users")
    count = chunks.chunk_count if chunks is not None and chunks.chunk_count else 0
    chunk_text = counted(count, "member chunk") if count else "member chunks"
    term.ok(
        f"cache filled from {chunk_text} in {(chunked_at or started) - started:.1f} s; "
        f"start-up{f' run #{run.id}' if run else ''} wrote {counted(run.created if run else 0, 'member')}"
        f" in {time.monotonic() - (chunked_at or started):.1f} s"
    )


# -- 2 and 6. live traffic ---------------------------------------------------------------------------


async def live_traffic(show: Show, number: int, seconds: float, title: str, *, drop_at: float | None = None) -> None:
    """Members join, leave, change roles and nicknames, chat; the bot follows from gateway events.

    With `drop_at`, the gateway connection drops that many seconds in, while the traffic goes on.
    """
    term, sandbox = show.terminal, show.sandbox
    term.heading(number, title)
    term.note(f"about {_TRAFFIC_RATE:.0f} changes a second for {seconds:.0f} s, sent as Discord's gateway events")
    step = TrafficCounts()
    watchers: list[asyncio.Task[None]] = []

    async def tick(elapsed: float) -> None:
        if drop_at is not None and not watchers and elapsed >= drop_at:
            await sandbox.disconnect(resumable=True)
            term.note("⚡ the gateway connection drops; Discord keeps the session's events for a RESUME")
            watchers.append(asyncio.create_task(_watch_resume(show), name="demo-resume-watch"))
        stats = await show.app.store.stats(show.guild_id, now=_utcnow())
        term.status(
            f"t+{term.elapsed():4.1f}s {step.compact()} │ server {sandbox.member_count(show.guild_id):,}"
            f" · db {stats.present_members:,}"
        )

    tick_every = 0.5 if term.interactive else 2.0
    try:
        await show.traffic.play(seconds, rate=_TRAFFIC_RATE, on_tick=tick, tick=tick_every, step=step)
    finally:
        for watcher in watchers:
            watcher.cancel()
    term.end_progress()
    term.note(f"sent: {step.describe()}")
    await show.app.activity.flush()
    diff, ok = await _converged(show, _CONVERGE_TIMEOUT)
    stats = await show.app.store.stats(show.guild_id, now=_utcnow())
    present = stats.present_members
    if ok:
        term.ok(
            f"the database follows: {counted(present, 'member')} present, {diff.server_members:,} on the server; "
            "names and roles equal"
        )
    else:
        term.problem(f"the database lags the server: {diff.describe()}")


async def _watch_resume(show: Show) -> None:
    started = time.monotonic()
    _, back = await _until(lambda: asyncio.sleep(0, show.sandbox.session_count()), bool, within=_CONVERGE_TIMEOUT)
    if back:
        show.terminal.note(f"⚡ hikari reconnected and resumed the session after {time.monotonic() - started:.1f} s")
    else:
        show.terminal.problem(f"the bot did not reconnect within {_CONVERGE_TIMEOUT:.0f} s")


# -- 3. tampering, repaired by the scheduled drift check ---------------------------------------------


async def tampering(show: Show) -> None:
    """Rows changed and deleted behind the bot's back; the scheduled drift check finds and heals them."""
    term, gid = show.terminal, show.guild_id
    term.heading(3, "Someone edits the database behind the bot's back")
    before = (await show.app.store.last_runs(gid)).get(DRIFT_CHECK)
    members = show.sandbox.member_count(gid)
    grantable = [r for r in show.sandbox.roles(gid).values() if r.id != gid and not r.managed]
    done = await show.replica.tamper(
        gid,
        show.rng,
        renames=max(3, members // 200),
        deletions=max(2, members // 500),
        spare=show.traffic.protected,
        role_id=grantable[0].id if grantable else None,
    )
    term.note(
        f"SQL: {counted(len(done.renamed), 'nickname')} overwritten, {counted(len(done.deleted), 'member row')} "
        f"deleted (and their {counted(done.links_deleted, 'role link')})"
        + (", 1 role renamed" if done.role_renamed else "")
    )
    drift = await plan_drift(show)
    term.note(f"drift the bot can see now (cache vs database): {drift.describe() if drift else 'unknown'}")
    await repair_tampering(show, after=before)


def _found_drift(run: SyncRun) -> bool:
    """A drift check's row counts what a reconcile would change (and names the drift in its note)."""
    return bool(run.created or run.updated or run.left or run.error_sample)


async def repair_tampering(show: Show, *, after: SyncRun | None) -> None:
    """Wait for the next scheduled drift check: show what it found (its run and the metric), then the heal."""
    term, gid = show.terminal, show.guild_id
    upcoming = show.scheduler.next_run_time(DRIFT_CHECK)
    when = f" (next in {max(0.0, (upcoming - _utcnow()).total_seconds()):.1f} s)" if upcoming else ""
    term.note(
        f"waiting for the scheduled drift check, every {show.app.settings.schedule.drift_check_seconds:.0f} s{when}"
    )
    last_id = after.id if after else 0
    interval = show.app.settings.schedule.drift_check_seconds
    reported: set[int] = set()

    async def newest() -> SyncRun | None:
        run = (await show.app.store.last_runs(gid)).get(DRIFT_CHECK)
        if run is not None and run.id > last_id and run.outcome not in (None, "success") and run.id not in reported:
            reported.add(run.id)
            term.problem(f"drift check run #{run.id}: {run.outcome}: {run.error_sample}")
        return run

    check, found = await _until(
        newest,
        lambda run: run is not None and run.id > last_id and run.outcome == "success" and _found_drift(run),
        within=3 * interval + 5.0,
    )
    if not found or check is None:
        term.problem("no drift check reported the tampering")
        return
    found_text = check.error_sample or f"{check.created} missing, {check.updated} stale, {check.left} departed"
    term.ok(f"drift check run #{check.id} ({check.trigger}) found {found_text}")
    gauges = _nonzero(await scrape(show, ("reconciler_drift{", "reconciler_coverage_ratio{")))
    if gauges:
        term.note("what Prometheus scrapes from the bot right now:")
        term.lines(gauges, indent="    ")
    diff, ok = await _converged(show, _CONVERGE_TIMEOUT)
    drift = await plan_drift(show)
    heal = (await show.app.store.last_runs(gid)).get("users")
    if ok and drift is not None and not drift.total:
        detail = ""
        if heal is not None and heal.id > check.id and heal.trigger == "schedule":
            detail = f" by run #{heal.id} ({heal.trigger}): {heal.created} created, {heal.updated} updated"
        term.ok(f"healed{detail}; drift now: none")
    else:
        term.problem(f"not healed: Discord vs database {diff.describe()}; drift {drift.describe() if drift else '?'}")


# -- 4. lost events, repaired by the relist ----------------------------------------------------------


async def lost_events(show: Show) -> None:
    """Gateway events dropped on the way: the cache is wrong too, so only a relist from Discord can tell."""
    term, sandbox, gid = show.terminal, show.sandbox, show.guild_id
    term.heading(4, "Events lost on the way: the bot's cache never hears of them")
    await sandbox.pause()
    step = TrafficCounts()
    try:
        # Member changes only: a relist re-reads members (roles come with GUILD_CREATE, not with chunks).
        show.traffic.random_changes(max(8, sandbox.member_count(gid) // 250), step, kinds=MEMBER_CHANGES)
        # At least one of each kind a relist has to recover, whatever the draw.
        for kind in ("join", "leave", "nick", "roles"):
            show.traffic.change(kind, step)
        await sandbox.flush()
    finally:
        await sandbox.resume()
    term.note(f"while the gateway dropped events: {step.describe()}")
    await asyncio.sleep(0.5)
    diff = await truth_diff(show)
    drift = await plan_drift(show)
    term.note(f"Discord vs database: {diff.describe()}")
    term.note(
        f"the drift check (cache vs database) sees: {drift.describe() if drift else 'unknown'}"
        " (the cache missed the same events)"
    )
    await repair_lost_events(show)


async def repair_lost_events(show: Show) -> None:
    """Run the scheduler's relist job on demand (it runs nightly on its cron) and show what it recovered."""
    term = show.terminal
    term.note("running the relist job now (scheduled by relist_cron): Discord's full member list, again")
    report = await show.scheduler.run_now(RELIST, [show.guild_id])
    run = report.guild(show.guild_id)
    detail = run.detail if run is not None else "no run"
    if run is None or report.outcome.value != "success":
        term.problem(f"relist {report.outcome.value}: {detail}")
    else:
        term.ok(f"relist done in {report.duration:.2f} s: {detail}")
    diff, ok = await _converged(show, _CONVERGE_TIMEOUT)
    if ok:
        term.ok("Discord vs database: none")
    else:
        term.problem(f"Discord vs database: {diff.describe()}")


# -- 5. /sync as an admin ----------------------------------------------------------------------------


async def _command(show: Show, path: Sequence[str]) -> list[dict[str, typing.Any]]:
    """Invoke `/sync ...` as the server's admin and collect the replies until the final embed."""
    sandbox, gid = show.sandbox, show.guild_id
    interaction = await sandbox.invoke_command(gid, sandbox.admin_user_id(gid), ["sync", *path])
    await sandbox.wait_for_responses(interaction, 1, _REPLY_TIMEOUT)

    async def probe() -> list[dict[str, typing.Any]]:
        return sandbox.interaction_responses(interaction)

    responses, _ = await _until(probe, lambda rs: any(_embeds(_message(r)) for r in rs), within=_REPLY_TIMEOUT)
    return responses


def _message(response: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """The message a response carries: a callback's `data`, or an edit's body itself."""
    body = typing.cast("dict[str, typing.Any]", response.get("body") or {})
    return typing.cast("dict[str, typing.Any]", body.get("data") or body)


def _embeds(message: dict[str, typing.Any]) -> list[dict[str, typing.Any]]:
    return typing.cast("list[dict[str, typing.Any]]", message.get("embeds") or [])


def _render_replies(term: Terminal, responses: Sequence[dict[str, typing.Any]]) -> None:
    for response in responses:
        body = typing.cast("dict[str, typing.Any]", response.get("body") or {})
        kind = str(response.get("kind"))
        at = float(response.get("elapsed") or 0.0)
        data = _message(response)
        if kind == "callback" and body.get("type") == 5:
            flags = int(data.get("flags") or 0)
            term.note(f"[{at:5.2f} s] deferred{' (ephemeral: only the admin sees it)' if flags & 64 else ''}")
            continue
        if data.get("content"):
            term.note(f"[{at:5.2f} s] {kind}: {data['content']}")
        for embed in _embeds(data):
            term.note(f"[{at:5.2f} s] {kind}:")
            term.lines(embed_lines(embed), indent="    ")


async def admin_commands(show: Show) -> None:
    """`/sync stats` then `/sync users`, invoked by the server's admin; the bot's real replies."""
    term = show.terminal
    term.heading(5, "An admin runs /sync stats and /sync users")
    registered, ok = await _until(
        lambda: asyncio.sleep(0, show.sandbox.commands()),
        lambda commands: any(c["name"] == "sync" for c in commands),
        within=_REPLY_TIMEOUT,
    )
    if not ok:
        term.problem(f"/sync is not registered (commands: {[c['name'] for c in registered]})")
        return
    admin = show.sandbox.member(show.guild_id, show.sandbox.admin_user_id(show.guild_id))
    who = admin.nick or admin.global_name or admin.username
    for path in (("stats",), ("users",)):
        term.line(f"  > /sync {' '.join(path)}   (as {who})")
        _render_replies(term, await _command(show, path))


# -- the whole show ------------------------------------------------------------------------------------


async def play(show: Show) -> None:
    """Every step in order; the live traffic stretches to fill `--duration`."""
    await initial_sync(show)
    first = min(max(2.0, 0.2 * show.duration), max(2.0, show.remaining - _SCRIPTED_SECONDS))
    await live_traffic(show, 2, first, "Live traffic: joins, leaves, roles, nicknames, messages")
    await tampering(show)
    await lost_events(show)
    await admin_commands(show)
    last = show.remaining - _SETTLE_SECONDS
    if last >= 2.0:
        drop = last / 3 if last >= 6.0 else None
        title = "More traffic, and the gateway connection drops" if drop else "Live traffic until the end"
        await live_traffic(show, 6, last, title, drop_at=drop)


async def collect_summary(show: Show, *, interrupted: bool, database: str, log_file: str) -> DemoSummary:
    """Let the bot catch up (briefly after Ctrl-C), then read both sides for the verdict."""
    with contextlib.suppress(Exception):
        await show.app.activity.flush()
    await _converged(show, 5.0 if interrupted else _CONVERGE_TIMEOUT)
    with contextlib.suppress(Exception):
        await show.app.activity.flush()
    diff = await truth_diff(show)
    drift = await plan_drift(show)
    statuses = await show.replica.status_counts(show.guild_id)
    registry = show.app.metrics.registry
    errors = {
        stage: int(registry.get_sample_value("reconciler_errors_total", {"stage": stage}) or 0)
        for stage in ERROR_STAGES
    }
    return DemoSummary(
        truth=diff,
        plan_drift=drift,
        database_present=statuses.get("active", 0) + statuses.get("inactive", 0),
        database_left=statuses.get("left", 0),
        runs=await show.replica.runs(show.guild_id),
        errors={stage: count for stage, count in errors.items() if count},
        messages_posted=show.traffic.counts.messages,
        messages_counted=await show.replica.messages(show.guild_id),
        database=database,
        metrics_url=show.metrics_url,
        log_file=log_file,
        elapsed=show.terminal.elapsed(),
        interrupted=interrupted,
    )
