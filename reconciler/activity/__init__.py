"""Message activity counted exactly once: the buffer (live and fetched messages) and the backfill."""

from __future__ import annotations

__all__ = ["ActivityBuffer", "Backfill", "BackfillProgress"]

from reconciler.activity.backfill import Backfill, BackfillProgress
from reconciler.activity.buffer import ActivityBuffer
