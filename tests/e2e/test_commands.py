"""/sync as an admin would use it: invoked through the sandbox, checked in the replies and the database."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import typing

import pytest
from slow_store import SlowStore
from waiting import eventually

from reconciler.sandbox import DiscordSandbox

EPHEMERAL = 64
DEFERRED = 5
MESSAGE = 4


async def _commands_registered(sandbox: DiscordSandbox) -> None:
    await eventually(
        lambda: asyncio.sleep(0, sandbox.commands()), lambda c: any(x["name"] == "sync" for x in c), within=10
    )


async def _invoke(
    sandbox: DiscordSandbox, guild_id: int, user_id: int, path: list[str], count: int, **options: typing.Any
) -> list[dict[str, typing.Any]]:
    iid = await sandbox.invoke_command(guild_id, user_id, ["sync", *path], options=options)
    await sandbox.wait_for_responses(iid, count=count, timeout=30)
    await asyncio.sleep(0.2)  # nothing more should follow
    return sandbox.interaction_responses(iid)


def _report(responses: list[dict[str, typing.Any]]) -> dict[str, str]:
    final = responses[-1]
    assert final["kind"] == "edit_original"
    embed = final["body"]["embeds"][0]
    return {"title": embed["title"], **{f["name"]: f["value"] for f in embed["fields"]}}


def _assert_deferred_first(responses: list[dict[str, typing.Any]]) -> None:
    first = responses[0]
    assert first["kind"] == "callback"
    assert first["body"]["type"] == DEFERRED
    assert first["body"]["data"]["flags"] & EPHEMERAL


@pytest.mark.asyncio
async def test_sync_users_reports_and_repairs_tampering(sandbox: DiscordSandbox, app_factory, db_view_factory) -> None:
    guild_id = sandbox.create_guild(members=400, roles=8, seed=21)
    app = await app_factory(sandbox)
    await _commands_registered(sandbox)
    view = db_view_factory(app.settings.database.url)
    admin = sandbox.admin_user_id(guild_id)
    victims = sorted(u for u, m in sandbox.members(guild_id).items() if not m.bot)[:3]
    await view.execute("UPDATE members SET nickname = 'tampered' WHERE user_id = :u", u=victims[0])
    await view.execute("DELETE FROM member_roles WHERE user_id = :u", u=victims[1])
    await view.execute("DELETE FROM member_roles WHERE user_id = :u", u=victims[2])
    await view.execute("DELETE FROM members WHERE user_id = :u", u=victims[2])

    responses = await _invoke(sandbox, guild_id, admin, ["users"], count=2)
    _assert_deferred_first(responses)
    report = _report(responses)
    assert report["title"].startswith("Sync users: success")
    assert (report["Created"], report["Updated"], report["Left"], report["Errors"]) == ("1", "2", "0", "0")
    assert report["Skipped"] == str(400 - 3)

    members = await view.members(guild_id)
    truth = sandbox.members(guild_id)
    assert members[victims[0]]["nickname"] == truth[victims[0]].nick
    assert victims[2] in members
    links = await view.links(guild_id)
    assert {r for u, r in links if u == victims[1]} == set(truth[victims[1]].role_ids)
    run = (await view.runs(guild_id))[-1]
    assert (run["trigger"], run["kind"], int(run["requested_by"]), run["outcome"]) == (
        "command",
        "users",
        admin,
        "success",
    )


@pytest.mark.asyncio
async def test_force_rewrites_unchanged_members(sandbox: DiscordSandbox, app_factory) -> None:
    guild_id = sandbox.create_guild(members=120, seed=22)
    await app_factory(sandbox)
    await _commands_registered(sandbox)
    report = _report(await _invoke(sandbox, guild_id, sandbox.admin_user_id(guild_id), ["users"], count=2, force=True))
    assert (report["Updated"], report["Skipped"], report["Created"]) == ("120", "0", "0")


@pytest.mark.asyncio
async def test_sync_roles_for_one_member(sandbox: DiscordSandbox, app_factory, db_view_factory) -> None:
    guild_id = sandbox.create_guild(members=100, roles=6, seed=23)
    app = await app_factory(sandbox)
    await _commands_registered(sandbox)
    view = db_view_factory(app.settings.database.url)
    target, other = sorted(u for u, m in sandbox.members(guild_id).items() if m.role_ids and not m.bot)[:2]
    await view.execute("DELETE FROM member_roles WHERE user_id IN (:a, :b)", a=target, b=other)

    report = _report(await _invoke(sandbox, guild_id, sandbox.owner_id(guild_id), ["roles"], count=2, user=target))
    assert report["title"].startswith("Sync roles of")
    links = await view.links(guild_id)
    assert {r for u, r in links if u == target} == set(sandbox.member(guild_id, target).role_ids)
    assert not any(u == other for u, _ in links), "a member outside the scope was touched"


@pytest.mark.asyncio
async def test_cleanup_marks_long_silent_members_inactive(
    sandbox: DiscordSandbox, app_factory, db_view_factory
) -> None:
    guild_id = sandbox.create_guild(members=60, seed=24)
    app = await app_factory(sandbox)
    await _commands_registered(sandbox)
    view = db_view_factory(app.settings.database.url)
    silent = sorted(u for u, m in sandbox.members(guild_id).items() if not m.bot)[:5]
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=45)
    for uid in silent:
        await view.execute(
            "UPDATE members SET first_seen_at = :t, last_seen_at = :t WHERE user_id = :u", t=long_ago, u=uid
        )
    report = _report(await _invoke(sandbox, guild_id, sandbox.admin_user_id(guild_id), ["cleanup"], count=2, days=30))
    assert report["Inactive"] == "5"
    members = await view.members(guild_id)
    assert {u for u, r in members.items() if r["status"] == "inactive"} == set(silent)
    assert len(members) == 60, "cleanup must not delete rows"


@pytest.mark.asyncio
@pytest.mark.parametrize("days", [0, 5000])
async def test_cleanup_days_out_of_range_is_refused(
    sandbox: DiscordSandbox, app_factory, db_view_factory, days: int
) -> None:
    guild_id = sandbox.create_guild(members=30, seed=25)
    app = await app_factory(sandbox)
    await _commands_registered(sandbox)
    view = db_view_factory(app.settings.database.url)
    runs_before = len(await view.runs(guild_id))
    responses = await _invoke(sandbox, guild_id, sandbox.admin_user_id(guild_id), ["cleanup"], count=1, days=days)
    assert len(responses) == 1
    body = responses[0]["body"]
    assert body["type"] == MESSAGE
    assert body["data"]["flags"] & EPHEMERAL
    assert "between 1 and 3650" in body["data"]["content"]
    assert len(await view.runs(guild_id)) == runs_before


@pytest.mark.asyncio
async def test_full_needs_confirmation(sandbox: DiscordSandbox, app_factory, db_view_factory) -> None:
    guild_id = sandbox.create_guild(members=80, seed=26)
    app = await app_factory(sandbox)
    await _commands_registered(sandbox)
    view = db_view_factory(app.settings.database.url)
    admin = sandbox.admin_user_id(guild_id)
    runs_before = len(await view.runs(guild_id))

    refused = await _invoke(sandbox, guild_id, admin, ["full"], count=1, confirm=False)
    assert "confirm:true" in refused[0]["body"]["data"]["content"]
    assert len(await view.runs(guild_id)) == runs_before

    report = _report(await _invoke(sandbox, guild_id, admin, ["full"], count=2, confirm=True))
    assert report["title"] == "Full sync: success"
    assert (await view.runs(guild_id))[-1]["kind"] == "full"


@pytest.mark.asyncio
async def test_stats_reports_health(sandbox: DiscordSandbox, app_factory, db_view_factory) -> None:
    guild_id = sandbox.create_guild(members=200, seed=27)
    app = await app_factory(sandbox)
    await _commands_registered(sandbox)
    channel = next(iter(sandbox.channels(guild_id)))
    author = sandbox.admin_user_id(guild_id)
    for _ in range(7):
        sandbox.post_message_nowait(channel, author, "hello")
    await sandbox.flush()
    await asyncio.sleep(0.5)

    healthy = _report(await _invoke(sandbox, guild_id, author, ["stats"], count=2))
    assert healthy["title"] == "Replica health: healthy"
    assert healthy["On Discord"] == "200"
    assert healthy["Coverage"] == "100.00%"
    assert healthy["In the database"].startswith("200 active")
    assert "today 7" in healthy["Messages"]
    assert "users" in healthy["Last runs"]
    assert healthy["Activity counting"].startswith("activity complete since")
    assert healthy["Top channels (7 d)"] == f"<#{channel}> 7"

    view = db_view_factory(app.settings.database.url)
    victim = next(u for u, m in sandbox.members(guild_id).items() if not m.bot and u != author)
    await view.execute("DELETE FROM member_roles WHERE user_id = :u", u=victim)
    await view.execute("DELETE FROM members WHERE user_id = :u", u=victim)
    drifting = _report(await _invoke(sandbox, guild_id, author, ["stats"], count=2))
    assert drifting["title"] == "Replica health: drifting"
    assert drifting["Coverage"] == "99.50%"
    assert "1 missing" in drifting["Drift now"]
    members = await view.members(guild_id)
    assert victim not in members, "stats must compute drift, not repair it"


@pytest.mark.asyncio
async def test_non_admin_is_refused_and_nothing_changes(sandbox: DiscordSandbox, app_factory, db_view_factory) -> None:
    guild_id = sandbox.create_guild(members=50, seed=28)
    app = await app_factory(sandbox)
    await _commands_registered(sandbox)
    view = db_view_factory(app.settings.database.url)
    runs_before = await view.runs(guild_id)
    plain = sandbox.plain_member_id(guild_id)
    with pytest.raises(PermissionError):
        await sandbox.invoke_command(guild_id, plain, ["sync", "users"])
    # A server may override the command's default permissions: the bot checks again.
    iid = sandbox.invoke_command_nowait(guild_id, plain, ["sync", "users"], enforce_permissions=False)
    responses = await sandbox.wait_for_responses(iid, count=1, timeout=10)
    await asyncio.sleep(0.3)
    responses = sandbox.interaction_responses(iid)
    assert len(responses) == 1
    body = responses[0]["body"]
    assert body["data"]["flags"] & EPHEMERAL
    assert "MANAGE_GUILD" in body["data"]["content"]
    assert await view.runs(guild_id) == runs_before


@pytest.mark.asyncio
async def test_slow_database_still_acknowledges_in_time_and_second_sync_waits(
    sandbox: DiscordSandbox, app_factory, db_view_factory
) -> None:
    guild_id = sandbox.create_guild(members=3000, seed=29)
    slow: list[SlowStore] = []

    def proxy(store: typing.Any) -> typing.Any:
        slow.append(SlowStore(store))
        return slow[0]

    app = await app_factory(sandbox, store_proxy=proxy, database={"batch_size": 100})
    await _commands_registered(sandbox)
    # The run's first database call (its sync_runs row) takes 4 s: longer than Discord's 3-s deadline.
    slow[0].delay, slow[0].batch_delay, slow[0].only = 4.0, 0.15, frozenset({"start_run"})
    admin = sandbox.admin_user_id(guild_id)

    first = sandbox.invoke_command_nowait(guild_id, admin, ["sync", "users"], options={"force": True})
    await sandbox.flush()
    await sandbox.wait_for_responses(first, count=1, timeout=10)
    await asyncio.sleep(0.2)
    second = await sandbox.invoke_command(guild_id, sandbox.owner_id(guild_id), ["sync", "users"])
    busy = await sandbox.wait_for_responses(second, count=1, timeout=10)

    responses = await eventually(
        lambda: asyncio.sleep(0, sandbox.interaction_responses(first)),
        lambda r: len(r) >= 3 and "embeds" in r[-1]["body"],
        within=60,
    )
    _assert_deferred_first(responses)
    assert responses[0]["elapsed"] < 3.0, "deferral missed Discord's 3-second deadline"
    progress = [r for r in responses[1:-1] if r["kind"] == "edit_original"]
    assert progress, "no progress edit while 3000 members were written"
    assert all("/sync users" in r["body"]["content"] for r in progress)
    # Sent at least 1 s apart; measured where they arrive, so a few ms of transport jitter are allowed.
    edit_times = [r["at"] for r in responses[1:]]
    gaps = [b - a for a, b in itertools.pairwise(edit_times)]
    assert min(gaps) >= 0.95, f"edits faster than once a second: {gaps}"
    assert _report(responses)["Updated"] == "3,000"

    assert busy[0]["body"]["type"] == MESSAGE
    assert "already" in busy[0]["body"]["data"]["content"]
    view = db_view_factory(app.settings.database.url)
    command_runs = [r for r in await view.runs(guild_id) if r["trigger"] == "command"]
    assert len(command_runs) == 1


@pytest.mark.asyncio
async def test_gateway_runs_share_a_row_per_period_and_stats_reads_it(
    sandbox: DiscordSandbox, app_factory, db_view_factory
) -> None:
    guild_id = sandbox.create_guild(members=150, seed=31)
    app = await app_factory(sandbox, sync={"gateway_runs_interval_seconds": 86_400})
    await _commands_registered(sandbox)
    view = db_view_factory(app.settings.database.url)
    admin = sandbox.admin_user_id(guild_id)
    joined: list[int] = []
    for n in range(4):
        # One join at a time, each written before the next: four gateway runs, not one merged burst.
        joined.append(await sandbox.add_member(guild_id, username=f"joiner{n}"))
        await eventually(lambda: view.members(guild_id), lambda m: set(joined) <= set(m), within=10)

    def gateway_runs_counted() -> float:
        return sum(
            sample.value
            for family in app.metrics.registry.collect()
            if family.name == "reconciler_sync_runs"
            for sample in family.samples
            if sample.name.endswith("_total") and sample.labels["trigger"] == "gateway"
        )

    async def gateway_rows() -> list[typing.Any]:
        return [run for run in await view.runs(guild_id) if run["trigger"] == "gateway"]

    # A run's row is written just after its members: wait until the rows sum every run the metrics counted.
    gateway = await eventually(
        gateway_rows, lambda rows: sum(run["runs"] for run in rows) >= max(4, gateway_runs_counted()), within=10
    )
    counted = gateway_runs_counted()
    assert sum(run["runs"] for run in gateway) == counted >= 4, "every gateway run is counted once, in a row"
    assert len(gateway) <= 2, "gateway runs are summed per period (two only across midnight UTC)"
    assert sum(run["created"] for run in gateway) == 4

    stats = _report(await _invoke(sandbox, guild_id, admin, ["stats"], count=2))
    latest = max(gateway, key=lambda run: run["id"])
    expected = f"{latest['runs']:,} gateway runs since" if latest["runs"] > 1 else "(gateway)"
    users_line = next(line for line in stats["Last runs"].splitlines() if line.startswith("**users**"))
    assert "success" in users_line
    assert expected in users_line
