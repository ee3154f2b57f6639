"""Live tracking: each gateway event is in the database within 2 s (real hikari, real database)."""

from __future__ import annotations

import pytest
from waiting import eventually

from reconciler.sandbox import DiscordSandbox

LIVE_DEADLINE = 2.0


@pytest.mark.asyncio
async def test_member_and_role_events_reach_the_database(
    sandbox: DiscordSandbox, app_factory, db_view_factory, database_url: str
) -> None:
    guild_id = sandbox.create_guild(members=300, roles=8, seed=3)
    app = await app_factory(sandbox, url=database_url)
    view = db_view_factory(app.settings.database.url)
    role_ids = [r for r in sandbox.roles(guild_id) if r != guild_id]

    # Join.
    newcomer = await sandbox.add_member(guild_id, username="newcomer", nick="new", roles=role_ids[:2])
    row = (await eventually(lambda: view.members(guild_id), lambda m: newcomer in m, within=LIVE_DEADLINE))[newcomer]
    assert (row["username"], row["nickname"], row["status"]) == ("newcomer", "new", "active")
    links = await view.links(guild_id)
    assert {(newcomer, r) for r in role_ids[:2]} <= links

    # Nickname change.
    await sandbox.update_member(guild_id, newcomer, nick="renamed")
    await eventually(
        lambda: view.members(guild_id), lambda m: m[newcomer]["nickname"] == "renamed", within=LIVE_DEADLINE
    )

    # Role grant and revoke in one update.
    await sandbox.update_member(guild_id, newcomer, roles=[role_ids[1], role_ids[2]])
    await eventually(
        lambda: view.links(guild_id),
        lambda got: {r for u, r in got if u == newcomer} == {role_ids[1], role_ids[2]},
        within=LIVE_DEADLINE,
    )

    # Leave: marked, never deleted.
    leaver = next(uid for uid, m in sandbox.members(guild_id).items() if not m.bot and uid != newcomer)
    await sandbox.remove_member(guild_id, leaver)
    row = (
        await eventually(lambda: view.members(guild_id), lambda m: m[leaver]["status"] == "left", within=LIVE_DEADLINE)
    )[leaver]
    assert row["left_at"] is not None

    # Role created, then deleted: the row stays with deleted_at, the links to it go.
    created = await sandbox.create_role(guild_id, name="Event Staff", color=0x3366FF)
    await eventually(lambda: view.roles(guild_id), lambda r: created in r, within=LIVE_DEADLINE)
    holder = await sandbox.add_member(guild_id, username="staffer", roles=[created])
    await eventually(lambda: view.links(guild_id), lambda got: (holder, created) in got, within=LIVE_DEADLINE)
    await sandbox.delete_role(guild_id, created)
    roles = await eventually(
        lambda: view.roles(guild_id), lambda r: r[created]["deleted_at"] is not None, within=LIVE_DEADLINE
    )
    assert roles[created]["name"] == "Event Staff"
    await eventually(lambda: view.links(guild_id), lambda got: (holder, created) not in got, within=LIVE_DEADLINE)

    # Untouched members were not rewritten by any of this.
    assert len(await view.members(guild_id)) == 300 + 2


@pytest.mark.asyncio
async def test_messages_count_activity_without_content(
    sandbox: DiscordSandbox, app_factory, db_view_factory, database_url: str
) -> None:
    guild_id = sandbox.create_guild(members=50, seed=4)
    app = await app_factory(sandbox, url=database_url)
    view = db_view_factory(app.settings.database.url)
    channel = next(iter(sandbox.channels(guild_id)))
    authors = [uid for uid, m in sandbox.members(guild_id).items() if not m.bot][:5]
    for index in range(100):
        sandbox.post_message_nowait(channel, authors[index % 5], f"secret message {index}")
    await sandbox.flush()

    counts = await eventually(lambda: view.activity(guild_id), lambda c: sum(c.values()) == 100, within=LIVE_DEADLINE)
    assert counts == dict.fromkeys(authors, 20)
    members = await view.members(guild_id)
    assert all(members[a]["last_seen_at"] is not None for a in authors)
    # Content is never stored anywhere.
    for table in ("members", "users", "message_activity", "sync_runs", "guilds", "roles"):
        for row in await view.rows(f"SELECT * FROM {table}"):
            assert not any("secret message" in str(value) for value in row.values()), table
