"""Gateway faults not covered by tests/e2e: rate-limited member requests, a RECONNECT storm, repeated fresh sessions.

In each, members leave, join and change while the bot's view is disturbed; afterwards the database equals
Discord, and exactly the members who left are marked left (by the runs' own counts and by the rows).
"""

from __future__ import annotations

import asyncio
import time
import typing

import pytest
from reliability_support import AppFactory, Observed, UrlFactory, ViewFactory, eventually, humans

from reconciler.harness import Scrape
from reconciler.sandbox import DiscordSandbox

if typing.TYPE_CHECKING:
    from database_view import DatabaseView

    from reconciler.app import App


async def _assert_converged(
    sandbox: DiscordSandbox, view: DatabaseView, guild_id: int, departed: list[int], *, within: float = 30
) -> list[dict[str, typing.Any]]:
    """Wait for the replica to equal Discord; check that only `departed` were marked left; return the runs."""
    truth = sandbox.members(guild_id)

    def equal(rows: dict[int, dict[str, typing.Any]]) -> bool:
        active = {u for u, r in rows.items() if r["status"] == "active"}
        return active == set(truth) and all(rows[u]["nickname"] == truth[u].nick for u in truth)

    rows = await eventually(lambda: view.members(guild_id), equal, within=within, interval=0.2)
    assert {u for u, r in rows.items() if r["status"] == "left"} == set(departed)
    runs = await view.runs(guild_id)
    assert sum(r["left"] for r in runs) == len(departed), "a run marked someone left who was still there"
    assert all(r["outcome"] in {"success", "skipped"} for r in runs), runs
    return runs


def _first_chunk_members(sandbox: DiscordSandbox, guild_id: int, count: int, exclude: set[int]) -> list[int]:
    """Humans among the first 1000 members (the first chunk, delivered already when chunking is mid-way)."""
    first = list(sandbox.members(guild_id))[:1000]
    bots = {u for u, m in sandbox.members(guild_id).items() if m.bot}
    special = {sandbox.owner_id(guild_id), sandbox.admin_user_id(guild_id)}
    return [u for u in first if u not in bots | special | exclude][:count]


@pytest.mark.asyncio
async def test_rate_limited_member_requests_mark_nobody_left(
    sandbox: DiscordSandbox, url_factory: UrlFactory, app_factory: AppFactory, db_view_factory: ViewFactory
) -> None:
    observed = Observed("RATE_LIMITED member requests after a fresh session")
    guild_id = sandbox.create_guild(members=5000, roles=8, seed=9301)
    url = await url_factory("sqlite")
    app: App = await app_factory(sandbox, url)
    view = db_view_factory(url)
    requests_before = sandbox.stats.full_member_requests

    # A fresh session empties hikari's cache (GUILD_CREATE) and every member request is refused for a while.
    sandbox.faults.member_request_window_s = 1.0
    sandbox.faults.rate_limit_member_requests = True
    limited_before = sandbox.stats.rate_limited_member_requests
    await sandbox.disconnect(resumable=False)
    await eventually(
        lambda: asyncio.sleep(0, sandbox.stats.rate_limited_member_requests - limited_before),
        lambda n: n >= 3,
        within=30,
    )
    assert not app.readiness.is_ready(guild_id)

    people = humans(sandbox, guild_id)
    departed = people[10:15]
    for uid in departed:
        sandbox.remove_member_nowait(guild_id, uid)
    for uid in people[20:25]:
        sandbox.update_member_nowait(guild_id, uid, nick=f"while-limited-{uid % 1000}")
    for index in range(3):
        sandbox.add_member_nowait(guild_id, username=f"joined-while-limited-{index}")
    await sandbox.flush()
    await asyncio.sleep(1.0)
    assert await view.scalar("SELECT COUNT(*) FROM members WHERE status = 'left'") == 0, "wrote from an empty cache"

    sandbox.faults.rate_limit_member_requests = False
    assert await app.wait_ready(30)
    assert await app.wait_idle(30)
    await _assert_converged(sandbox, view, guild_id, departed)
    scrape = Scrape(app.metrics.exposition().decode())
    observed["rate_limited_replies"] = sandbox.stats.rate_limited_member_requests - limited_before
    observed["full_member_requests"] = sandbox.stats.full_member_requests - requests_before
    observed["chunking_errors_counted"] = scrape.value("reconciler_errors_total", stage="chunking")
    observed["marked_left"] = len(departed)
    observed.print()
    assert scrape.value("reconciler_errors_total", stage="chunking") >= 3


@pytest.mark.asyncio
@pytest.mark.slow
async def test_reconnect_storm_of_ten_resumes_loses_nothing(
    sandbox: DiscordSandbox, url_factory: UrlFactory, app_factory: AppFactory, db_view_factory: ViewFactory
) -> None:
    observed = Observed("RECONNECT storm (10 in under a minute)")
    guild_id = sandbox.create_guild(members=5000, roles=8, seed=9302)
    url = await url_factory("sqlite")
    app: App = await app_factory(sandbox, url)
    view = db_view_factory(url)
    people = iter(humans(sandbox, guild_id)[5:])
    departed: list[int] = []
    resumes_before, requests_before = sandbox.stats.resumes, sandbox.stats.full_member_requests

    started = time.monotonic()
    for index in range(10):
        await eventually(lambda: asyncio.sleep(0, sandbox.session_count()), lambda n: n == 1, within=30)
        await sandbox.reconnect_request()
        # Changes land while the bot is away: the resume must replay them.
        sandbox.update_member_nowait(guild_id, next(people), nick=f"storm-{index}")
        gone = next(people)
        sandbox.remove_member_nowait(guild_id, gone)
        departed.append(gone)
        sandbox.add_member_nowait(guild_id, username=f"storm-joiner-{index}")
    storm_seconds = time.monotonic() - started
    assert storm_seconds < 60, f"10 RECONNECTs took {storm_seconds:.0f} s"

    await eventually(lambda: asyncio.sleep(0, sandbox.session_count()), lambda n: n == 1, within=30)
    await _assert_converged(sandbox, view, guild_id, departed)
    assert app.readiness.is_ready(guild_id)
    observed["storm_seconds"] = storm_seconds
    observed["resumes"] = sandbox.stats.resumes - resumes_before
    observed["full_member_requests_during_storm"] = sandbox.stats.full_member_requests - requests_before
    observed["marked_left"] = len(departed)
    observed.print()
    assert sandbox.stats.resumes - resumes_before == 10
    # Every reconnect resumed: hikari kept its cache, nothing was chunked again.
    assert sandbox.stats.full_member_requests == requests_before


@pytest.mark.asyncio
@pytest.mark.slow
async def test_repeated_fresh_sessions_during_chunking_mark_nobody_left(
    sandbox: DiscordSandbox, url_factory: UrlFactory, app_factory: AppFactory, db_view_factory: ViewFactory
) -> None:
    observed = Observed("three non-resumable sessions in a row, each mid-chunking")
    guild_id = sandbox.create_guild(members=10_000, roles=8, seed=9303)
    url = await url_factory("sqlite")
    app: App = await app_factory(sandbox, url)
    view = db_view_factory(url)
    runs_before = len(await view.runs(guild_id))
    sandbox.faults.chunk_delay_s = 0.05
    departed: list[int] = []
    previous_nonce: str | None = None

    for round_index in range(3):
        await sandbox.disconnect(resumable=False)
        nonce = await eventually(
            lambda: asyncio.sleep(0, app.readiness.pending_nonce(guild_id)),
            lambda n, seen=previous_nonce: n is not None and n != seen,
            within=30,
        )
        await eventually(
            lambda: asyncio.sleep(0, app.readiness.progress(guild_id)),
            lambda p: p is not None and p.chunks_received >= 3,
            within=30,
        )
        assert not app.readiness.is_ready(guild_id)
        previous_nonce = nonce
        # Only members whose chunk has arrived already leave: a later chunk of the same request, built
        # before they left, would put them back in hikari's cache (as Discord's own chunks would).
        leaving = _first_chunk_members(sandbox, guild_id, 2, set(departed))
        for uid in leaving:
            sandbox.remove_member_nowait(guild_id, uid)
        departed.extend(leaving)
        sandbox.add_member_nowait(guild_id, username=f"fresh-session-joiner-{round_index}")
        await sandbox.flush()
        assert await view.scalar("SELECT COUNT(*) FROM members WHERE status = 'left'") == 0

    sandbox.faults.chunk_delay_s = 0.0
    assert await app.wait_ready(60)
    assert await app.wait_idle(60)
    runs = await _assert_converged(sandbox, view, guild_id, departed)
    observed["sessions_invalidated"] = 3
    observed["runs_after_faults"] = len(runs) - runs_before
    observed["runs_skipped_not_ready"] = sum(r["outcome"] == "skipped" for r in runs[runs_before:])
    observed["marked_left"] = len(departed)
    observed.print()


@pytest.mark.asyncio
async def test_member_who_leaves_while_chunks_are_in_flight_is_not_brought_back(
    sandbox: DiscordSandbox, url_factory: UrlFactory, app_factory: AppFactory, db_view_factory: ViewFactory
) -> None:
    observed = Observed("departures while member chunks are in flight")
    guild_id = sandbox.create_guild(members=10_000, roles=8, seed=9304)
    url = await url_factory("sqlite")
    app: App = await app_factory(sandbox, url)
    view = db_view_factory(url)
    sandbox.faults.chunk_delay_s = 0.05
    await sandbox.disconnect(resumable=False)
    await eventually(
        lambda: asyncio.sleep(0, app.readiness.progress(guild_id)),
        lambda p: p is not None and not p.ready and p.chunks_received >= 2,
        within=30,
    )
    # The chunks still to come were built before these members left: they carry them all the same.
    bots = {u for u, m in sandbox.members(guild_id).items() if m.bot}
    later = [u for u in list(sandbox.members(guild_id))[9000:] if u not in bots]
    departed, rejoiner = later[:3], later[3]
    for uid in (*departed, rejoiner):
        sandbox.remove_member_nowait(guild_id, uid)
    sandbox.add_member_nowait(guild_id, user_id=rejoiner)
    await sandbox.flush()
    sandbox.faults.chunk_delay_s = 0.0
    assert await app.wait_ready(30)
    assert await app.wait_idle(30)

    await _assert_converged(sandbox, view, guild_id, departed)
    assert all(app.bot.cache.get_member(guild_id, uid) is None for uid in departed)
    assert app.bot.cache.get_member(guild_id, rejoiner) is not None
    observed["left_during_chunking"] = len(departed) + 1
    observed["rejoined_during_chunking"] = 1
    observed["ghosts_in_cache"] = sum(app.bot.cache.get_member(guild_id, uid) is not None for uid in departed)
    observed.print()
