"""Garbage-collector policy for a process that holds a million cached members.

hikari's cache is millions of long-lived objects; with CPython's default thresholds every young
collection that escalates walks all of them, which DESIGN.md measured at about 60% of hikari's
per-member cost while chunking. Young collections are made rarer, and once a guild's member list is
loaded its objects are moved out of the collector's sight (`gc.freeze`): they live as long as the guild.
"""

from __future__ import annotations

__all__ = ["freeze_loaded_objects", "relax_collection_thresholds"]

import gc
import logging
import typing

_LOGGER: typing.Final = logging.getLogger(__name__)

# Allocations before a young collection (default 700), and young collections per older one.
_THRESHOLDS: typing.Final = (50_000, 20, 100)


def relax_collection_thresholds() -> None:
    gc.set_threshold(*_THRESHOLDS)


def freeze_loaded_objects() -> None:
    """Move everything alive now (a freshly loaded cache) to the permanent generation."""
    gc.collect(0)
    gc.freeze()
    _LOGGER.debug("gc frozen", extra={"frozen_objects": gc.get_freeze_count()})
