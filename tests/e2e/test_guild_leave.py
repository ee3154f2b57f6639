"""When the bot leaves a guild, the process forgets it: its series leave /metrics, its lock, memo and work go."""

from __future__ import annotations

import typing

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from waiting import eventually

if typing.TYPE_CHECKING:
    from reconciler.app import App
    from reconciler.sandbox import DiscordSandbox


async def _guilds_in_metrics(app: App) -> set[str]:
    server = app.metrics_server
    assert server is not None
    async with aiohttp.ClientSession() as session, session.get(f"{server.url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {
        sample.labels["guild"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "guild" in sample.labels
    }


@pytest.mark.asyncio
async def test_leaving_a_guild_drops_its_series_its_lock_memo_and_pending_work(
    sandbox: DiscordSandbox, app_factory, db_view_factory
) -> None:
    leaving = sandbox.create_guild(members=300, roles=4, seed=21)
    staying = sandbox.create_guild(members=200, roles=3, seed=22)
    app = await app_factory(sandbox)
    assert await _guilds_in_metrics(app) >= {str(leaving), str(staying)}
    assert app.reconciler.holds(leaving), "a reconciled guild keeps its lock and fingerprint memo"
    before = app.metrics.registry.get_sample_value("reconciler_guild_ready", {"guild": str(leaving)})
    assert before == 1

    await sandbox.remove_guild(leaving)

    guilds = await eventually(lambda: _guilds_in_metrics(app), lambda g: str(leaving) not in g, within=10)
    assert str(staying) in guilds, "only the departed guild's series go"
    assert not app.reconciler.holds(leaving)
    assert not app.queue.is_pending(leaving)
    assert app.queue.pending_request(leaving) is None
    # Its rows are kept: the guild is marked removed, its members stay.
    view = db_view_factory(app.settings.database.url)
    assert len(await view.members(leaving)) == 300
    removed = {g.id: g.removed_at for g in await app.store.guilds()}
    assert removed[leaving] is not None
    assert removed[staying] is None
