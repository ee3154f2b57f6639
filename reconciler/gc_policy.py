"""Garbage-collector policy for a process that holds a million cached members.

hikari's cache is millions of long-lived objects; with CPython's default thresholds every young
collection that escalates walks all of them, which DESIGN.md measured at about 60% of hikari's
per-member cost while chunking. Young collections are made rarer; while member lists load the
collector is off altogether (`LoadingPause`); once they are loaded their objects are moved out of the
collector's sight (`gc.freeze`): they live as long as the guild.
"""

from __future__ import annotations

__all__ = ["LoadingPause", "freeze_loaded_objects", "relax_collection_thresholds"]

import asyncio
import gc
import logging
import typing

_LOGGER: typing.Final = logging.getLogger(__name__)

# Allocations before a young collection (default 700), and young collections per older one.
_THRESHOLDS: typing.Final = (50_000, 20, 100)


def relax_collection_thresholds() -> None:
    gc.set_threshold(*_THRESHOLDS)


def freeze_loaded_objects() -> None:
    """Move everything alive now (a freshly loaded cache) to the permanent generation.

    A full collection goes first: the collector never looks at frozen objects again, so a garbage
    cycle frozen with them is kept for the life of the process. A new session's member list follows
    the old session's end (its sockets, buffers, tasks and tracebacks, cyclic garbage still in the
    older generations), and every such freeze kept them for good. The full collection costs little
    more than the young one it replaces: after the first freeze, the older generations hold only what
    survived since the last one; the freshly loaded objects, walked by both, are most of the work.
    """
    gc.collect()
    gc.freeze()
    _LOGGER.debug("gc frozen", extra={"frozen_objects": gc.get_freeze_count()})


class LoadingPause:
    """The collector is off while any guild's member list loads, and for `limit` seconds at most.

    A member list arrives as millions of new objects that all live on: a collection in between only
    walks them again (hikari chunks 1M members in about 18 s with the collector off, 22 s with relaxed
    thresholds alone, here). Whatever cyclic garbage appears meanwhile is collected when the collector
    is back. When the last loading guild is ready, or gone, or `limit` runs out (a request that never
    completes must not leave the collector off), the loaded objects are frozen and the collector resumes.
    """

    def __init__(self, *, limit: float = 120.0) -> None:
        self._limit = limit
        self._loading: set[int] = set()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def paused(self) -> bool:
        return self._timer is not None

    def loading(self, guild_id: int, loading: bool) -> None:
        """A guild's member list started (True) or stopped (False) loading."""
        if loading:
            self._loading.add(guild_id)
            if self._timer is None and gc.isenabled():
                gc.disable()
                self._timer = asyncio.get_running_loop().call_later(self._limit, self._expire)
            return
        self._loading.discard(guild_id)
        if not self._loading:
            self._resume()
        else:
            freeze_loaded_objects()

    def close(self) -> None:
        self._loading.clear()
        self._resume()

    def _expire(self) -> None:
        _LOGGER.warning("member lists still loading; garbage collector back on", extra={"guilds": len(self._loading)})
        self._timer = None
        self._loading.clear()  # those still loading resume nothing later; a new load may pause again
        freeze_loaded_objects()
        gc.enable()

    def _resume(self) -> None:
        freeze_loaded_objects()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            gc.enable()
