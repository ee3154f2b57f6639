"""The replica remembers: history from gateway events and repairs, the member fields admins ask about,
`/sync stats user:`, and a forgotten user who stays forgotten (real hikari, real database, sandbox)."""

from __future__ import annotations

import asyncio
import datetime
import json
import typing

import pytest
from waiting import eventually

from reconciler.domain import Scope
from reconciler.engine.runs import RunKind, SyncRequest, Trigger
from reconciler.sandbox import DiscordSandbox
from reconciler.sandbox.state import DID_REJOIN, MemberFields
from reconciler.store import SqlStore

if typing.TYPE_CHECKING:
    from database_view import DatabaseView

LIVE = 5.0
BOOST = datetime.datetime(2024, 2, 1, 10, 0, tzinfo=datetime.UTC)
TIMEOUT = datetime.datetime(2099, 3, 2, 10, 0, tzinfo=datetime.UTC)


async def _events(view: DatabaseView, user_id: int) -> list[dict[str, typing.Any]]:
    return await view.rows(
        "SELECT kind, old_value, new_value, role_id, source, run_id FROM member_events WHERE user_id = :u ORDER BY id",
        u=user_id,
    )


async def _has_kinds(view: DatabaseView, user_id: int, kinds: set[str]) -> list[dict[str, typing.Any]]:
    return await eventually(
        lambda: _events(view, user_id), lambda rows: kinds <= {row["kind"] for row in rows}, within=LIVE
    )


@pytest.mark.asyncio
async def test_gateway_events_write_history_and_member_fields(
    sandbox: DiscordSandbox, app_factory, db_view_factory, database_url: str
) -> None:
    guild_id = sandbox.create_guild(members=60, roles=5, seed=171)
    app = await app_factory(sandbox, url=database_url)
    view = db_view_factory(app.settings.database.url)
    assert await view.scalar("SELECT count(*) FROM member_events") == 0, "the first sync is the baseline"
    role_ids = [r for r in sandbox.roles(guild_id) if r != guild_id]
    target = next(u for u, m in sandbox.members(guild_id).items() if not m.bot and not m.role_ids)
    old_nick = sandbox.member(guild_id, target).nick
    old_username = sandbox.member(guild_id, target).username

    # One change at a time: runs are level-triggered, so changes that arrive together are compared together.
    await sandbox.update_member(guild_id, target, nick="renamed", username="renamed_user", roles=[role_ids[0]])
    await _has_kinds(view, target, {"role_added"})
    await sandbox.update_member(
        guild_id,
        target,
        fields=MemberFields(
            premium_since=BOOST, communication_disabled_until=TIMEOUT, pending=True, flags=2, guild_avatar="a_g"
        ),
    )
    await _has_kinds(view, target, {"guild_avatar_changed"})
    await sandbox.update_member(guild_id, target, roles=[role_ids[1]])
    await _has_kinds(view, target, {"role_removed"})
    member = (await view.rows("SELECT * FROM members WHERE user_id = :u", u=target))[0]
    assert member["guild_avatar_hash"] == "a_g"
    assert bool(member["pending"]) is True
    assert int(member["flags"]) == 2
    assert member["premium_since"] is not None
    assert member["communication_disabled_until"] is not None

    await sandbox.remove_member(guild_id, target)
    await _has_kinds(view, target, {"left"})
    await sandbox.add_member(guild_id, user_id=target, roles=[role_ids[1]])
    rows = await _has_kinds(view, target, {"rejoined"})

    # Gateway runs are summed into one sync_runs row per period when they end: their events name no run.
    assert all(row["source"] == "gateway" and row["run_id"] is None for row in rows)
    seen = [(r["kind"], r["old_value"], r["new_value"], r["role_id"]) for r in rows]
    assert ("nickname_changed", old_nick, "renamed", None) in seen
    assert ("username_changed", old_username, "renamed_user", None) in seen
    assert ("role_added", None, None, role_ids[0]) in seen
    assert ("role_removed", None, None, role_ids[0]) in seen
    assert ("pending_changed", "false", "true", None) in seen
    assert ("flags_changed", "0", "2", None) in seen
    assert ("premium_since_changed", None, BOOST.isoformat(), None) in seen
    assert ("timeout_changed", None, TIMEOUT.isoformat(), None) in seen
    # Left with role 1 (its interval ends), back with it (a new interval), DID_REJOIN set by Discord.
    tail = seen[seen.index(("left", None, None, None)) :]
    assert tail[:2] == [("left", None, None, None), ("role_removed", None, None, role_ids[1])]
    assert ("rejoined", None, None, None) in tail
    assert ("role_added", None, None, role_ids[1]) in tail
    assert ("flags_changed", "2", str(DID_REJOIN), None) in tail

    newcomer = await sandbox.add_member(guild_id, username="newcomer")
    joined = await _has_kinds(view, newcomer, {"joined"})
    assert [(r["kind"], r["source"]) for r in joined] == [("joined", "gateway")]


@pytest.mark.asyncio
async def test_a_repair_records_what_it_found_with_its_run_id(
    sandbox: DiscordSandbox, app_factory, db_view_factory, database_url: str
) -> None:
    guild_id = sandbox.create_guild(members=40, seed=172)
    app = await app_factory(sandbox, url=database_url)
    view = db_view_factory(app.settings.database.url)
    victim, missing = sorted(u for u, m in sandbox.members(guild_id).items() if not m.bot)[:2]
    await view.execute("UPDATE members SET nickname = 'tampered' WHERE user_id = :u", u=victim)
    await view.execute("DELETE FROM members WHERE user_id = :u", u=missing)

    report = await app.queue.submit(
        SyncRequest(
            guild_id=guild_id, scope=Scope.everything(), trigger=Trigger.COMMAND, kind=RunKind.USERS, verify=True
        )
    )

    assert report.run_id is not None
    fixed = await _events(view, victim)
    assert [(r["kind"], r["old_value"], r["source"], r["run_id"]) for r in fixed] == [
        ("nickname_changed", "tampered", "repair", report.run_id)
    ]
    first = (await _events(view, missing))[0]
    assert (first["kind"], first["source"], first["run_id"]) == (
        "joined",
        "repair",
        report.run_id,
    )


@pytest.mark.asyncio
async def test_sync_stats_user_shows_the_member_record(sandbox: DiscordSandbox, app_factory) -> None:
    guild_id = sandbox.create_guild(members=30, roles=4, seed=173)
    await app_factory(sandbox)
    await eventually(
        lambda: asyncio.sleep(0, sandbox.commands()), lambda c: any(x["name"] == "sync" for x in c), within=10
    )
    role_id = next(r for r in sandbox.roles(guild_id) if r != guild_id)
    target = next(u for u, m in sandbox.members(guild_id).items() if not m.bot)
    await sandbox.update_member(
        guild_id, target, nick="shown", roles=[role_id], fields=MemberFields(premium_since=BOOST)
    )
    admin = sandbox.admin_user_id(guild_id)

    async def record() -> dict[str, str]:
        iid = await sandbox.invoke_command(guild_id, admin, ["sync", "stats"], options={"user": target})
        await sandbox.wait_for_responses(iid, count=2, timeout=30)
        responses = sandbox.interaction_responses(iid)
        assert responses[0]["body"]["data"]["flags"] & 64, "ephemeral"
        embed = responses[-1]["body"]["embeds"][0]
        return {"title": embed["title"], **{f["name"]: f["value"] for f in embed["fields"]}}

    shown = await eventually(record, lambda r: "nickname_changed" in r["History (newest first)"], within=LIVE)
    assert shown["title"] == "Member record: shown"
    assert shown["Status"] == "active"
    assert f"<@&{role_id}>" in shown["Roles"]
    assert shown["Boosting"].startswith("since <t:")
    assert shown["Timed out"] == "no"
    assert "role_added" in shown["History (newest first)"]

    plain = next(u for u, m in sandbox.members(guild_id).items() if not m.bot and not m.role_ids and u != target)
    iid = await sandbox.invoke_command(
        guild_id, plain, ["sync", "stats"], options={"user": target}, enforce_permissions=False
    )
    refusal = (await sandbox.wait_for_responses(iid, count=1, timeout=30))[0]
    assert "permission" in refusal["body"]["data"]["content"]


@pytest.mark.asyncio
async def test_a_forgotten_user_stays_forgotten_through_live_updates_and_full_reconciles(
    sandbox: DiscordSandbox, app_factory, db_view_factory, database_url: str
) -> None:
    guild_id = sandbox.create_guild(members=50, seed=174)
    app = await app_factory(sandbox, url=database_url)
    view = db_view_factory(app.settings.database.url)
    target, witness = sorted(u for u, m in sandbox.members(guild_id).items() if not m.bot)[:2]
    await sandbox.update_member(guild_id, target, nick="secret-nick", global_name="Secret Name")
    await eventually(lambda: view.members(guild_id), lambda m: m[target]["nickname"] == "secret-nick", within=LIVE)

    other_process = await SqlStore.open(app.settings.database.url, pool_size=1)  # as `reconciler user forget`
    try:
        assert await other_process.forget_user(target) == 1
        # Live: the user renames again; a rename of someone else in the same burst shows the run happened.
        await sandbox.update_member(guild_id, target, nick="new-secret", username="secret_user", global_name="Again")
        await sandbox.update_member(guild_id, witness, nick="witnessed")
        await eventually(lambda: view.members(guild_id), lambda m: m[witness]["nickname"] == "witnessed", within=LIVE)
        # A full reconcile that reads every row, as /sync full does.
        report = await app.queue.submit(
            SyncRequest(
                guild_id=guild_id, scope=Scope.everything(), trigger=Trigger.COMMAND, kind=RunKind.FULL, verify=True
            )
        )
        assert report.errors == 0
        exported = await other_process.export_user(target)
    finally:
        await other_process.close()

    assert exported is not None
    text = json.dumps(exported)
    sandbox_user = sandbox.member(guild_id, target)
    for personal in ("secret-nick", "Secret Name", "new-secret", "secret_user", "Again", sandbox_user.username):
        assert personal not in text
    assert exported["members"][0]["status"] == "active", "an id-only row keeps the coverage right"
    assert exported["users"][0]["username"] == ""
    kinds = [e["kind"] for e in exported["member_events"]]
    assert kinds[-1] == "forgotten", "nothing about the names was recorded after the forget"
    assert "nickname_changed" in kinds, "the history before the forget is kept, without its values"
    assert all(e["old_value"] is None and e["new_value"] is None for e in exported["member_events"])
    present = await view.scalar("SELECT count(*) FROM members WHERE guild_id = :g AND status = 'active'", g=guild_id)
    assert present == len(sandbox.members(guild_id))
