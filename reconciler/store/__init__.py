"""The database replica: tables, migrations, and the `Store` the engine reads and writes through."""

from __future__ import annotations

__all__ = [
    "ActivityDelta",
    "ApplyResult",
    "GuildRecord",
    "ProgressCallback",
    "SqlStore",
    "Store",
    "StoreStats",
    "SyncRun",
    "upgrade_database",
]

from reconciler.domain import ActivityDelta
from reconciler.store.api import ApplyResult, GuildRecord, ProgressCallback, Store, StoreStats, SyncRun
from reconciler.store.migrate import upgrade_database
from reconciler.store.sql_store import SqlStore
