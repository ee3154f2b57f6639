"""`[retention]`: what the nightly cleanup prunes and erases, and that 0 keeps everything."""

from __future__ import annotations

import datetime
import pathlib

import pytest

from reconciler.config import RetentionSettings, settings_from
from reconciler.domain import GuildSnapshot, MemberState, Scope, plan_changes
from reconciler.observability.metrics import Metrics
from reconciler.scheduling import Retention
from reconciler.store import SqlStore

GUILD = 31
START = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


class _Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime.datetime:
        return self.now


async def _sync(store: SqlStore, *members: MemberState) -> None:
    desired = GuildSnapshot(guild_id=GUILD, members={m.user_id: m for m in members})
    await store.apply(GUILD, plan_changes(desired, await store.load_snapshot(GUILD, Scope.everything())))


@pytest.mark.asyncio
async def test_retention_prunes_history_and_erases_departed_names_after_their_days(tmp_path: pathlib.Path) -> None:
    clock = _Clock()
    store = await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", clock=clock)
    try:
        await store.upgrade()
        await _sync(store, MemberState(user_id=1, username="one", nickname="a"), MemberState(user_id=2, username="two"))
        await store.set_reconciled(GUILD, clock())
        await _sync(store, MemberState(user_id=1, username="one", nickname="b"))  # a rename, a departure
        clock.now = START + datetime.timedelta(days=10)

        keep = Retention(store=store, settings=RetentionSettings(), metrics=Metrics(), clock=clock)
        asked = RetentionSettings(member_events_days=30, left_member_days=30)
        too_young = Retention(store=store, settings=asked, metrics=Metrics(), clock=clock)
        assert await keep() == "0 sync_runs rows pruned, 0 scheduler_slots rows pruned"
        assert await too_young() == (
            "0 sync_runs rows pruned, 0 scheduler_slots rows pruned, 0 member_events rows pruned, "
            "names erased in 0 rows of departed members"
        )

        clock.now = START + datetime.timedelta(days=31)
        assert await too_young() == (
            "0 sync_runs rows pruned, 0 scheduler_slots rows pruned, 2 member_events rows pruned, "
            "names erased in 1 row of departed members"
        )
        exported = await store.export_user(2)
    finally:
        await store.close()
    assert exported is not None
    assert exported["users"][0]["username"] == "", "in no guild for more than 30 days: names erased"


def test_retention_keeps_everything_by_default_and_refuses_negative_days() -> None:
    assert settings_from({}).retention == RetentionSettings(member_events_days=0, left_member_days=0)
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        RetentionSettings(member_events_days=-1)
