"""The count audit's measurement: Discord's own counts against the replica's, read twice if they differ.

Between relists nothing else compares the replica with Discord itself: the drift check compares it with
hikari's cache, which is exactly what missed an event that Discord never delivered. Discord's counts
cost two REST calls whatever the guild's size, so they can be checked every few minutes.
"""

from __future__ import annotations

__all__ = ["COUNT_AUDIT_KIND", "CountAuditReport", "DiscordCounts", "measure_counts", "publish_counts"]

import asyncio
import logging
import typing

import attrs

from reconciler.domain.counts import compare_counts

if typing.TYPE_CHECKING:
    from reconciler.domain.counts import CountMismatch, GuildCounts
    from reconciler.observability.metrics import Metrics
    from reconciler.store.api import Store

_LOGGER: typing.Final = logging.getLogger(__name__)

COUNT_AUDIT_KIND: typing.Final = "count_audit"
"""`sync_runs.kind` of a count audit (and its scheduler job name)."""


class DiscordCounts(typing.Protocol):
    """What Discord itself counts for a guild (`reconciler.discord.counts` reads it over REST)."""

    async def fetch_counts(self, guild_id: int) -> GuildCounts:
        """The guild's approximate member count and the member count of each role but @everyone."""
        ...


@attrs.define(frozen=True, kw_only=True, slots=True)
class CountAuditReport:
    guild_id: int
    discord: GuildCounts
    replica: GuildCounts
    mismatch: CountMismatch
    settled: bool
    """The first reading differed, so both sides were read again after the settle time."""


async def _read(guild_id: int, discord: DiscordCounts, store: Store) -> tuple[GuildCounts, GuildCounts]:
    # Discord first: an event it has already counted may still be on its way to the replica, never the
    # other way round, so a difference that goes away after the settle was only in flight.
    theirs = await discord.fetch_counts(guild_id)
    ours = await store.present_counts(guild_id)
    return theirs, ours


async def measure_counts(
    guild_id: int, *, discord: DiscordCounts, store: Store, settle_seconds: float
) -> CountAuditReport:
    """Compare both sides; if they differ, wait `settle_seconds` for events in flight and compare again.

    Only the second reading counts: a join Discord has counted but whose event the bot is still writing
    is not a mismatch. Errors of either side propagate.
    """
    theirs, ours = await _read(guild_id, discord, store)
    mismatch = compare_counts(theirs, ours)
    if not mismatch.total:
        return CountAuditReport(guild_id=guild_id, discord=theirs, replica=ours, mismatch=mismatch, settled=False)
    await asyncio.sleep(settle_seconds)
    theirs, ours = await _read(guild_id, discord, store)
    return CountAuditReport(
        guild_id=guild_id, discord=theirs, replica=ours, mismatch=compare_counts(theirs, ours), settled=True
    )


def publish_counts(metrics: Metrics, guild_id: int, mismatch: CountMismatch) -> None:
    """Set `reconciler_count_audit_mismatch` for every kind of the guild (0 where the counts agree)."""
    for kind, value in mismatch.by_kind().items():
        metrics.count_audit_mismatch.labels(guild=str(guild_id), kind=kind).set(value)
