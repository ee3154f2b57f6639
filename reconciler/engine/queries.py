"""The questions `/sync stats` asks of the replica, handed to the Discord layer instead of the store."""

from __future__ import annotations

__all__ = ["GuildQueries"]

import typing

from reconciler.engine.drift import DriftReport, measure_drift
from reconciler.engine.planning import GuildNotReadyError

if typing.TYPE_CHECKING:
    import datetime
    from collections.abc import Callable, Mapping, Sequence

    from reconciler.engine.planning import DesiredState
    from reconciler.engine.reconcile import Reconciler
    from reconciler.observability.metrics import Metrics
    from reconciler.store.api import MemberRecord, Store, StoreStats, SyncRun


class GuildQueries:
    """Read-only: drift measured as the drift check measures it, stored counts and the last runs."""

    def __init__(
        self,
        *,
        store: Store,
        desired: DesiredState,
        reconciler: Reconciler,
        metrics: Metrics,
        activity_status: Callable[[int], str | None] | None = None,
    ) -> None:
        self._store = store
        self._desired = desired
        self._reconciler = reconciler
        self._metrics = metrics
        self._activity_status = activity_status

    async def drift(self, guild_id: int, *, now: datetime.datetime) -> DriftReport | None:
        """Every row compared (so the command and the gauges agree); None while the guild is not ready."""
        try:
            return await measure_drift(
                guild_id,
                desired=self._desired,
                store=self._store,
                guild_lock=self._reconciler.guild_lock,
                now=now,
                metrics=self._metrics,
            )
        except GuildNotReadyError:
            return None

    async def stats(self, guild_id: int, *, now: datetime.datetime) -> StoreStats:
        return await self._store.stats(guild_id, now=now)

    async def last_runs(self, guild_id: int) -> Mapping[str, SyncRun]:
        return await self._store.last_runs(guild_id)

    async def member_record(self, guild_id: int, user_id: int, *, now: datetime.datetime) -> MemberRecord | None:
        """One member's row, roles, message counts and last 10 history events; None if never stored."""
        return await self._store.member_record(guild_id, user_id, now=now, events=10)

    async def top_channels(self, guild_id: int, *, now: datetime.datetime) -> Sequence[tuple[int, int]]:
        """The five busiest channels of the last 7 UTC days: (channel id, messages)."""
        return await self._store.top_channels(guild_id, now=now, days=7, limit=5)

    def activity_status(self, guild_id: int) -> str:
        """Whether the guild's message counts are complete, or how far the backfill is."""
        status = self._activity_status(guild_id) if self._activity_status is not None else None
        return status or "counting live messages (no backfill)"
