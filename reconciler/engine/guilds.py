"""The engine's side of the bot joining and leaving guilds: the guild's row and what the engine holds for it.

The Discord layer reports what the gateway said (a guild arrived, the bot was removed); this records it,
so the Discord layer never holds the store.
"""

from __future__ import annotations

__all__ = ["GuildRecords"]

import logging
import typing

if typing.TYPE_CHECKING:
    from reconciler.engine.queue import SyncQueue
    from reconciler.observability.metrics import Metrics
    from reconciler.store.api import Store

_LOGGER: typing.Final = logging.getLogger(__name__)


class GuildRecords:
    """Writes guild rows and drops a departed guild's pending work; store failures count, never raise."""

    def __init__(self, *, store: Store, queue: SyncQueue, metrics: Metrics) -> None:
        self._store = store
        self._queue = queue
        self._metrics = metrics

    async def arrived(self, guild_id: int, *, name: str | None, member_count: int | None) -> None:
        """A GUILD_CREATE: record the guild, and republish its last success from before a restart."""
        try:
            await self._store.upsert_guild(guild_id, name=name, member_count=member_count)
            # After a restart the "no successful reconcile in 24 h" alert needs the last success on
            # record, not nothing until the next run succeeds.
            record = next((g for g in await self._store.guilds() if g.id == guild_id), None)
            if record is not None and record.last_reconciled_at is not None:
                self._metrics.last_success.labels(guild=str(guild_id)).set(record.last_reconciled_at.timestamp())
        except Exception:
            self._metrics.errors.labels(stage="store").inc()
            _LOGGER.exception("guild upsert failed", extra={"guild_id": guild_id})

    async def removed(self, guild_id: int) -> None:
        """The bot was removed from the guild: nothing waiting for it can run; its rows are kept.

        What the process held for it goes: pending work, lock and fingerprint memo (through the queue),
        and every metric series labelled with it, so a year of guilds joined and left adds nothing."""
        self._queue.drop_guild(guild_id)
        self._metrics.remove_guild(guild_id)
        try:
            await self._store.mark_guild_removed(guild_id)
        except Exception:
            self._metrics.errors.labels(stage="store").inc()
            _LOGGER.exception("guild removal not recorded", extra={"guild_id": guild_id})
        _LOGGER.info("bot removed from guild; rows kept", extra={"guild_id": guild_id})
