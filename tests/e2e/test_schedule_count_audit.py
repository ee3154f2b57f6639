"""The count audit: Discord's own counts catch what the gateway never delivered, long before the nightly relist.

The drift check cannot see such a loss: it compares the database with hikari's cache, and the cache is
what missed the event. Here the sandbox's gateway is paused while members change roles and one leaves;
with the relist's cron and the drift check far away, only the count audit can repair the replica.
"""

from __future__ import annotations

import asyncio
import random
import time
import typing

import pytest
from waiting import eventually

from reconciler.observability.metrics import COUNT_AUDIT_KINDS
from reconciler.sandbox import DiscordSandbox

if typing.TYPE_CHECKING:
    from database_view import DatabaseView

    from reconciler.app import App

AUDIT_SECONDS: typing.Final = 2.0
SETTLE_SECONDS: typing.Final = 5.0  # reconciler.scheduling's settle before a difference counts
REQUEST_WINDOW_SECONDS: typing.Final = 3.0  # the sandbox's full member request window, shortened from 30 s
FAR_AWAY: typing.Final = "0 0 29 2 *"
SCHEDULE: typing.Final = {
    "enabled": True,
    "count_audit_seconds": AUDIT_SECONDS,
    "count_audit_jitter_seconds": 0.0,
    "drift_check_seconds": 86_400.0,
    "relist_cron": FAR_AWAY,
    "cleanup_cron": FAR_AWAY,
}


def _mismatch(app: App, guild_id: int) -> dict[str, float | None]:
    sample = app.metrics.registry.get_sample_value
    return {
        kind: sample("reconciler_count_audit_mismatch", {"guild": str(guild_id), "kind": kind})
        for kind in COUNT_AUDIT_KINDS
    }


async def _replica(view: DatabaseView, guild_id: int) -> tuple[set[int], set[tuple[int, int]]]:
    members = await view.members(guild_id)
    present = {uid for uid, row in members.items() if row["status"] != "left"}
    links = {(uid, role) for uid, role in await view.links(guild_id) if uid in present}
    return present, links


def _truth(sandbox: DiscordSandbox, guild_id: int) -> tuple[set[int], set[tuple[int, int]]]:
    members = sandbox.members(guild_id)
    return set(members), {(uid, role) for uid, m in members.items() for role in m.role_ids}


async def _audits(view: DatabaseView, guild_id: int) -> list[dict[str, typing.Any]]:
    return [r for r in await view.runs(guild_id) if r["kind"] == "count_audit" and r["finished_at"] is not None]


@pytest.mark.asyncio
async def test_role_changes_and_a_departure_lost_on_the_way_are_repaired_by_the_count_audit(
    sandbox: DiscordSandbox, app_factory, db_view_factory, database_url: str
) -> None:
    guild_id = sandbox.create_guild(members=600, roles=8, seed=61)
    sandbox.faults.member_request_window_s = REQUEST_WINDOW_SECONDS
    app = await app_factory(sandbox, url=database_url, schedule=SCHEDULE)
    view = db_view_factory(app.settings.database.url)
    assert await _replica(view, guild_id) == _truth(sandbox, guild_id)
    role_ids = [r for r in sandbox.roles(guild_id) if r != guild_id and not sandbox.roles(guild_id)[r].managed]
    rng = random.Random(61)
    humans = sorted(uid for uid, m in sandbox.members(guild_id).items() if not m.bot and m.role_ids)

    await sandbox.pause()
    regranted = rng.sample(humans, 6)
    for uid in regranted:
        sandbox.update_member_nowait(guild_id, uid, roles=rng.sample(role_ids, 2))
    departed = next(uid for uid in humans if uid not in regranted)
    sandbox.remove_member_nowait(guild_id, departed)
    await sandbox.flush()
    await sandbox.resume()
    lost_at = time.monotonic()
    assert app.bot.cache.get_member(guild_id, departed) is not None, "the bot saw an event it should have missed"

    # The next audit fires within AUDIT_SECONDS, settles, then the relist waits out what is left of
    # Discord's member request window and reconciles: the relist itself takes a few seconds at most.
    await eventually(
        lambda: _replica(view, guild_id),
        lambda replica: replica == _truth(sandbox, guild_id),
        within=AUDIT_SECONDS + SETTLE_SECONDS + REQUEST_WINDOW_SECONDS + 8.0,
        interval=0.2,
    )
    repaired_after = time.monotonic() - lost_at
    members = await view.members(guild_id)
    assert members[departed]["status"] == "left"
    assert app.bot.cache.get_member(guild_id, departed) is None

    # The audit reads the counts once more after its relist, then records itself.
    audits = await eventually(
        lambda: _audits(view, guild_id),
        lambda runs: any("relisted" in (r["error_sample"] or "") for r in runs),
        within=SETTLE_SECONDS + 5,
    )
    finding = next(r for r in audits if "relisted" in (r["error_sample"] or ""))
    relists = [r for r in await view.runs(guild_id) if r["kind"] == "relist"]
    assert [(r["trigger"], r["outcome"], r["left"]) for r in relists] == [("schedule", "success", 1)]
    assert finding["outcome"] == "success"
    assert finding["error_sample"].startswith("members: Discord 599, replica 600;")
    assert finding["error_sample"].endswith("after: counts match")

    # Once equal, later audits find nothing and relist nothing: wait for two more of them.
    seen = audits.index(finding) + 1
    later = await eventually(
        lambda: _audits(view, guild_id), lambda runs: len(runs) >= seen + 2, within=3 * AUDIT_SECONDS + 5
    )
    assert [r["error_sample"] for r in later[seen:]] == ["counts match"] * (len(later) - seen)
    assert len([r for r in await view.runs(guild_id) if r["kind"] == "relist"]) == 1
    assert _mismatch(app, guild_id) == dict.fromkeys(COUNT_AUDIT_KINDS, 0.0)
    assert repaired_after < AUDIT_SECONDS + SETTLE_SECONDS + REQUEST_WINDOW_SECONDS + 8.0


@pytest.mark.asyncio
async def test_equal_counts_relist_nothing_and_show_in_sync_stats(
    sandbox: DiscordSandbox, app_factory, db_view_factory
) -> None:
    guild_id = sandbox.create_guild(members=300, roles=6, seed=62)
    app = await app_factory(sandbox, schedule=SCHEDULE)
    view = db_view_factory(app.settings.database.url)
    requests = sandbox.stats.full_member_requests

    # Three audits are three chances to relist by mistake; each fires AUDIT_SECONDS apart.
    audits = await eventually(
        lambda: _audits(view, guild_id), lambda runs: len(runs) >= 3, within=4 * AUDIT_SECONDS + 5
    )

    assert {(r["outcome"], r["trigger"], r["error_sample"]) for r in audits} == {
        ("success", "schedule", "counts match")
    }
    assert sandbox.stats.full_member_requests == requests
    assert not [r for r in await view.runs(guild_id) if r["kind"] == "relist"]
    assert _mismatch(app, guild_id) == dict.fromkeys(COUNT_AUDIT_KINDS, 0.0)
    sample = app.metrics.registry.get_sample_value
    assert sample("reconciler_scheduler_job_runs_total", {"job_name": "count_audit", "outcome": "success"}) >= 3

    await eventually(
        lambda: asyncio.sleep(0, sandbox.commands()), lambda c: any(x["name"] == "sync" for x in c), within=10
    )
    interaction = await sandbox.invoke_command(guild_id, sandbox.admin_user_id(guild_id), ["sync", "stats"])
    responses = await sandbox.wait_for_responses(interaction, count=2, timeout=30)
    fields = {f["name"]: f["value"] for f in responses[-1]["body"]["embeds"][0]["fields"]}
    assert fields["Discord's own counts"].startswith("counts match (")
    assert "count_audit" in fields["Last runs"]


@pytest.mark.asyncio
async def test_a_relist_the_audit_asks_for_inside_discords_member_request_window_waits_it_out(
    sandbox: DiscordSandbox, app_factory, db_view_factory
) -> None:
    # The bot's start-up member request opens the window; the loss comes at once, so the audit's relist
    # (at most AUDIT_SECONDS + SETTLE_SECONDS after start-up, which takes about a second here) lands
    # inside it: Discord answers RATE_LIMITED, and the relist waits for the window to close.
    window = 15.0
    sandbox.faults.member_request_window_s = window
    guild_id = sandbox.create_guild(members=300, roles=6, seed=63)
    app = await app_factory(sandbox, schedule=SCHEDULE)
    view = db_view_factory(app.settings.database.url)
    limited = sandbox.stats.rate_limited_member_requests
    leaver = next(uid for uid, m in sandbox.members(guild_id).items() if not m.bot)

    await sandbox.pause()
    sandbox.remove_member_nowait(guild_id, leaver)
    await sandbox.flush()
    await sandbox.resume()

    await eventually(
        lambda: _replica(view, guild_id),
        lambda replica: replica == _truth(sandbox, guild_id),
        within=window + AUDIT_SECONDS + SETTLE_SECONDS + 8.0,
        interval=0.2,
    )
    assert sandbox.stats.rate_limited_member_requests > limited, "the relist was not asked inside the window"
    audits = await eventually(
        lambda: _audits(view, guild_id),
        lambda runs: any("relisted" in (r["error_sample"] or "") for r in runs),
        within=SETTLE_SECONDS + 5,
    )
    assert [r["outcome"] for r in audits] == ["success"] * len(audits)
    relists = [r for r in await view.runs(guild_id) if r["kind"] == "relist"]
    assert [(r["outcome"], r["left"]) for r in relists] == [("success", 1)]
