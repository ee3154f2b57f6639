"""`kill -9` in the middle of a full sync of 50,000 members: every committed batch is kept, none twice."""

from __future__ import annotations

import datetime
import time
import typing

import pytest
import sqlalchemy.exc
from database_view import DatabaseView
from reliability_support import BACKENDS, BotFactory, Observed, UrlFactory, ViewFactory, eventually, truth_links

from reconciler.harness import bot_environment
from reconciler.sandbox import DiscordSandbox

MEMBERS: typing.Final = 50_000
BATCH: typing.Final = 500

_MEMBER_ROWS: typing.Final = (
    "SELECT m.user_id, m.nickname, m.status, m.first_seen_at, m.updated_at, m.fingerprint,"
    " u.username, u.global_name FROM members m JOIN users u ON u.id = m.user_id WHERE m.guild_id = :g"
)


def _seconds(start: datetime.datetime | str, end: datetime.datetime | str) -> float:
    # SQLite hands back text for a timestamp read with plain SQL.
    def parse(value: datetime.datetime | str) -> datetime.datetime:
        return value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(value)

    return (parse(end) - parse(start)).total_seconds()


async def _row_count(view: DatabaseView, guild_id: int) -> int:
    """Members written so far; 0 while the process has not created the tables yet."""
    try:
        return int(await view.scalar("SELECT COUNT(*) FROM members WHERE guild_id = :g", g=guild_id))
    except sqlalchemy.exc.DBAPIError:
        return 0


async def _member_rows(view: DatabaseView, guild_id: int) -> dict[int, dict[str, typing.Any]]:
    return {int(r["user_id"]): r for r in await view.rows(_MEMBER_ROWS, g=guild_id)}


@pytest.mark.asyncio
@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
async def test_kill_9_mid_full_sync_keeps_committed_batches_and_converges(
    sandbox: DiscordSandbox,
    url_factory: UrlFactory,
    db_view_factory: ViewFactory,
    bot_factory: BotFactory,
    backend: str,
) -> None:
    observed = Observed(f"kill -9 mid full sync ({backend})")
    guild_id = sandbox.create_guild(members=MEMBERS, roles=12, seed=9101)
    url = await url_factory(backend)
    view = db_view_factory(url)
    bot = await bot_factory(bot_environment(sandbox, url, DATABASE__BATCH_SIZE=str(BATCH)), name="bot")

    # Kill while the start-up run is between its first and last batch.
    seen = await eventually(lambda: _row_count(view, guild_id), lambda n: n >= 20_000, within=90, interval=0.01)
    status = await bot.kill()
    assert status == -9
    assert seen < MEMBERS, f"the sync finished before the kill ({seen} rows): nothing was interrupted"

    committed = await _member_rows(view, guild_id)
    links_at_kill = await view.links(guild_id)
    truth = sandbox.members(guild_id)
    observed["rows_seen_before_kill"] = seen
    observed["rows_committed_at_kill"] = len(committed)
    assert len(committed) % BATCH == 0, "a batch was committed in part"
    # Each batch is one transaction: a committed member has its user and every one of its links.
    assert {(u, r) for u, r in links_at_kill} == {(u, r) for u in committed for r in truth[u].role_ids}
    for uid, row in committed.items():
        assert (row["nickname"], row["username"], row["global_name"]) == (
            truth[uid].nick,
            truth[uid].username,
            truth[uid].global_name,
        )
    killed_runs = await view.runs(guild_id)
    assert [(r["trigger"], r["outcome"]) for r in killed_runs] == [("startup", None)]

    started = time.monotonic()
    await bot.start()
    runs = await eventually(
        lambda: view.runs(guild_id),
        lambda rs: any(r["outcome"] is not None for r in rs),
        within=90,
        interval=0.1,
    )
    observed["restart_to_converged_s"] = time.monotonic() - started
    finished = [r for r in runs if r["outcome"] is not None]
    assert len(finished) == 1
    rerun = finished[0]
    assert (rerun["trigger"], rerun["outcome"]) == ("startup", "success")
    # The restarted run wrote only what the killed one had not committed, and kept the rest as it was.
    assert rerun["created"] == MEMBERS - len(committed)
    assert rerun["unchanged"] == len(committed)
    assert (rerun["updated"], rerun["left"], rerun["errors"]) == (0, 0, 0)
    observed["restart_created"] = rerun["created"]
    observed["restart_unchanged"] = rerun["unchanged"]
    observed["restart_run_duration_s"] = _seconds(rerun["started_at"], rerun["finished_at"])

    after = await _member_rows(view, guild_id)
    assert set(after) == set(truth)
    assert all(row["status"] == "active" for row in after.values())
    for uid, row in committed.items():
        assert after[uid] == row, f"member {uid}, committed before the kill, was rewritten"
    assert await view.links(guild_id) == truth_links(sandbox, guild_id)
    counts = await view.rows(
        "SELECT (SELECT COUNT(*) FROM members WHERE guild_id = :g) AS members,"
        " (SELECT COUNT(DISTINCT user_id) FROM members WHERE guild_id = :g) AS distinct_members,"
        " (SELECT COUNT(*) FROM member_roles WHERE guild_id = :g) AS links,"
        " (SELECT COUNT(*) FROM users) AS users",
        g=guild_id,
    )
    assert counts[0] == {
        "members": MEMBERS,
        "distinct_members": MEMBERS,
        "links": len(truth_links(sandbox, guild_id)),
        "users": MEMBERS,
    }
    assert await bot.terminate() == 0, bot.tail()
    observed.print()
