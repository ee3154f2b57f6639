"""Start-up: the database follows the sandbox guild completely once chunking finishes."""

from __future__ import annotations

import pytest

from reconciler.sandbox import DiscordSandbox


@pytest.mark.asyncio
async def test_startup_stores_every_member_with_roles(
    sandbox: DiscordSandbox, app_factory, db_view_factory, database_url: str
) -> None:
    guild_id = sandbox.create_guild(name="Big", members=5000, roles=12, seed=7)
    app = await app_factory(sandbox, url=database_url)
    view = db_view_factory(app.settings.database.url)

    truth = sandbox.members(guild_id)
    members = await view.members(guild_id)
    assert set(members) == set(truth)
    assert {r["status"] for r in members.values()} == {"active"}
    sample = next(iter(truth.values()))
    row = members[sample.user_id]
    assert (row["username"], row["global_name"], row["nickname"]) == (sample.username, sample.global_name, sample.nick)
    expected_links = {(m.user_id, r) for m in truth.values() for r in m.role_ids}
    assert await view.links(guild_id) == expected_links
    roles = await view.roles(guild_id)
    assert set(roles) == set(sandbox.roles(guild_id))
    runs = await view.runs(guild_id)
    assert [(r["trigger"], r["outcome"]) for r in runs] == [("startup", "success")]
    assert runs[0]["created"] == 5000
    sample = app.metrics.registry.get_sample_value
    labels = {"guild": str(guild_id)}
    assert sample("reconciler_coverage_ratio", labels) == 1.0
    assert sample("reconciler_discord_members", labels) == 5000
    assert sample("reconciler_drift", {**labels, "kind": "missing"}) == 0
    assert sample("reconciler_guild_ready", labels) == 1
