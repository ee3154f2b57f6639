"""The scheduled drift check finds rows deleted or edited behind the bot's back, and repairs them unasked."""

from __future__ import annotations

import asyncio
import typing

import pytest
import sqlalchemy as sa
from waiting import eventually

from reconciler.sandbox import DiscordSandbox
from reconciler.store.connect import create_engine

if typing.TYPE_CHECKING:
    from database_view import DatabaseView

    from reconciler.app import App

FAST_DRIFT = {"enabled": True, "drift_check_seconds": 0.5, "drift_check_jitter_seconds": 0.0}


async def _tamper(view: DatabaseView, guild_id: int) -> dict[str, int]:
    """Damage the replica the ways a person with a SQL prompt would, in one transaction (a check never
    sees half of it); return the drift it should show."""
    links = await view.links(guild_id)
    roles_of: dict[int, set[int]] = {}
    for user_id, role_id in links:
        roles_of.setdefault(user_id, set()).add(role_id)
    members = await view.members(guild_id)
    humans = sorted(uid for uid, row in members.items() if not row["is_bot"] and roles_of.get(uid))
    deleted, renamed, unlinked, marked_left = humans[:3], humans[3:5], humans[5], humans[6]
    role_id = min(r for r in (await view.roles(guild_id)) if r != guild_id)
    statements: list[tuple[str, dict[str, int]]] = [
        *(("DELETE FROM members WHERE guild_id = :g AND user_id = :u", {"u": uid}) for uid in deleted),
        *(
            ("UPDATE members SET nickname = 'tampered' WHERE guild_id = :g AND user_id = :u", {"u": uid})
            for uid in renamed
        ),
        (
            "DELETE FROM member_roles WHERE guild_id = :g AND user_id = :u AND role_id = :r",
            {"u": unlinked, "r": min(roles_of[unlinked])},
        ),
        ("UPDATE members SET status = 'left' WHERE guild_id = :g AND user_id = :u", {"u": marked_left}),
        ("UPDATE roles SET name = 'hacked' WHERE guild_id = :g AND role_id = :r", {"r": role_id}),
    ]
    engine = create_engine(view.url, pool_size=1)
    try:
        async with engine.begin() as conn:
            for sql, params in statements:
                await conn.execute(sa.text(sql), {"g": guild_id, **params})
    finally:
        await engine.dispose()
    return {
        "missing": 3,
        "stale": 3,  # two nicknames and one member's links
        "departed": 0,
        "rejoined": 1,
        # A recreated member gets its links back, plus the one link deleted on its own.
        "role_links": sum(len(roles_of[uid]) for uid in deleted) + 1,
        "roles": 1,
    }


def _drift(app: App, guild_id: int) -> dict[str, float | None]:
    kinds = ("missing", "stale", "departed", "rejoined", "role_links", "roles")
    return {
        kind: app.metrics.registry.get_sample_value("reconciler_drift", {"guild": str(guild_id), "kind": kind})
        for kind in kinds
    }


def _gauge(app: App, name: str, **labels: str) -> float | None:
    return app.metrics.registry.get_sample_value(name, labels)


async def _replica(view: DatabaseView, guild_id: int) -> tuple[object, ...]:
    members = {
        uid: (row["username"], row["nickname"], row["status"]) for uid, row in (await view.members(guild_id)).items()
    }
    roles = {rid: (row["name"], row["deleted_at"]) for rid, row in (await view.roles(guild_id)).items()}
    return members, await view.links(guild_id), roles


@pytest.mark.asyncio
async def test_drift_is_measured_by_kind_and_left_alone_without_auto_heal(
    sandbox: DiscordSandbox, app_factory, db_view_factory
) -> None:
    guild_id = sandbox.create_guild(members=300, roles=8, seed=21)
    app = await app_factory(sandbox, schedule={**FAST_DRIFT, "auto_heal": False})
    view = db_view_factory(app.settings.database.url)
    await eventually(lambda: _drift_now(app, guild_id), lambda d: d["missing"] == 0, within=5)

    expected = await _tamper(view, guild_id)
    damaged = await _replica(view, guild_id)
    assert await eventually(lambda: _drift_now(app, guild_id), lambda d: d == expected, within=5) == expected

    on_discord = sandbox.member_count(guild_id)
    assert _gauge(app, "reconciler_discord_members", guild=str(guild_id)) == on_discord
    assert _gauge(app, "reconciler_coverage_ratio", guild=str(guild_id)) == pytest.approx(
        (on_discord - 3 - 1) / on_discord
    )
    assert _gauge(app, "reconciler_database_members", guild=str(guild_id), status="left") == 1
    assert _gauge(app, "reconciler_database_members", guild=str(guild_id), status="active") == on_discord - 4

    def latest_check(runs: list[dict[str, typing.Any]]) -> dict[str, typing.Any] | None:
        finished = [r for r in runs if r["kind"] == "drift_check" and r["finished_at"] is not None]
        return finished[-1] if finished else None

    def counted(runs: list[dict[str, typing.Any]]) -> bool:
        check = latest_check(runs)
        return check is not None and check["created"] == 3

    runs = await eventually(lambda: view.runs(guild_id), counted, within=5)
    row = latest_check(runs)
    assert row is not None
    assert (row["trigger"], row["outcome"], row["created"], row["updated"], row["left"]) == (
        "schedule",
        "success",
        3,
        3,
        0,
    )
    assert "3 missing" in row["error_sample"]
    assert row["unchanged"] == on_discord - 3 - 3 - 1

    # More checks come and go; with auto_heal off nothing is written.
    seen = len(await view.runs(guild_id))
    await eventually(lambda: view.runs(guild_id), lambda runs: len(runs) >= seen + 2, within=5)
    assert await _replica(view, guild_id) == damaged
    assert not [r for r in await view.runs(guild_id) if r["kind"] != "drift_check" and r["trigger"] == "schedule"]
    # A check's sync_runs row is written when it starts, its job counter when it ends: wait on the counter.
    success = await eventually(
        lambda: asyncio.sleep(
            0, _gauge(app, "reconciler_scheduler_job_runs_total", job_name="drift_check", outcome="success")
        ),
        lambda value: value is not None and value >= 3,
        within=5,
    )
    assert success is not None


@pytest.mark.asyncio
async def test_tampered_rows_are_detected_and_repaired_without_any_command(
    sandbox: DiscordSandbox, app_factory, db_view_factory
) -> None:
    guild_id = sandbox.create_guild(members=300, roles=8, seed=22)
    app = await app_factory(sandbox, schedule=FAST_DRIFT)
    view = db_view_factory(app.settings.database.url)
    healthy = await _replica(view, guild_id)

    expected = await _tamper(view, guild_id)
    assert await _replica(view, guild_id) != healthy
    await eventually(lambda: _replica(view, guild_id), lambda replica: replica == healthy, within=10)

    runs = await view.runs(guild_id)
    detected = next(r for r in runs if r["kind"] == "drift_check" and r["created"])
    assert (detected["created"], detected["updated"]) == (expected["missing"], expected["stale"])
    repairs = [r for r in runs if r["id"] > detected["id"] and r["kind"] != "drift_check"]
    assert repairs
    assert repairs[0]["trigger"] == "schedule"
    assert repairs[0]["outcome"] == "success"
    assert repairs[0]["requested_by"] is None
    assert [r for r in runs if r["trigger"] == "command"] == []
    # The next checks find nothing left to repair.
    zero = dict.fromkeys(expected, 0.0)
    await eventually(lambda: _drift_now(app, guild_id), lambda drift: drift == zero, within=5)
    assert _gauge(app, "reconciler_coverage_ratio", guild=str(guild_id)) == 1.0


async def _drift_now(app: App, guild_id: int) -> dict[str, float | None]:
    return _drift(app, guild_id)
