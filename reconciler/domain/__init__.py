"""The pure core: guild state values, fingerprints and the diff. No I/O, no hikari, no SQLAlchemy."""

from __future__ import annotations

__all__ = [
    "FINGERPRINT_VERSION",
    "ActivityBatch",
    "ActivityDelta",
    "ChangeCounts",
    "ChangeSet",
    "ChannelActivityDelta",
    "ChannelCounted",
    "CountedIds",
    "CountedUpdate",
    "EventKind",
    "EventOrigin",
    "EventSource",
    "FingerprintComparison",
    "FingerprintMemo",
    "GuildSnapshot",
    "IdGap",
    "MemberChange",
    "MemberEvent",
    "MemberState",
    "MemberStatus",
    "RecordedGap",
    "RoleState",
    "Scope",
    "StoredFingerprints",
    "StoredMember",
    "StoredRole",
    "StoredSnapshot",
    "apply_to",
    "change_events",
    "compare_fingerprints",
    "created_events",
    "dirty_user_ids",
    "fingerprint",
    "merge_activity",
    "merge_channel_activity",
    "plan_changes",
    "redact",
    "snowflake_at",
    "snowflake_time",
]

from reconciler.domain.activity import (
    ActivityBatch,
    ActivityDelta,
    ChannelActivityDelta,
    ChannelCounted,
    CountedUpdate,
    RecordedGap,
    merge_activity,
    merge_channel_activity,
)
from reconciler.domain.changes import ChangeCounts, ChangeSet, MemberChange, apply_to, plan_changes
from reconciler.domain.counted import CountedIds, IdGap, snowflake_at, snowflake_time
from reconciler.domain.fingerprints import (
    FINGERPRINT_VERSION,
    FingerprintComparison,
    FingerprintMemo,
    StoredFingerprints,
    compare_fingerprints,
    dirty_user_ids,
    fingerprint,
)
from reconciler.domain.history import (
    EventKind,
    EventOrigin,
    EventSource,
    MemberEvent,
    change_events,
    created_events,
    redact,
)
from reconciler.domain.state import (
    GuildSnapshot,
    MemberState,
    MemberStatus,
    RoleState,
    Scope,
    StoredMember,
    StoredRole,
    StoredSnapshot,
)
