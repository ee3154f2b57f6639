"""A `Metrics` filled as a healthy bot fills it: the stand-in scrape target until the real bot runs here.

Every series a panel or an alert reads exists, with the label values the engine uses, and the state is
healthy (full coverage, no drift, gateway connected), so no alert rule should fire against it.
"""

from __future__ import annotations

import time

from reconciler.observability.metrics import (
    CHANGE_KINDS,
    COUNT_AUDIT_KINDS,
    DRIFT_KINDS,
    RUN_KINDS,
    SCHEDULER_JOBS,
    TRIGGERS,
    Metrics,
)

GUILDS = (175928847299117063, 81384788765712384)
MEMBERS = {GUILDS[0]: 48_213, GUILDS[1]: 1_207}
SHARDS = (0, 1)
GATEWAY_EVENTS = (
    "GUILD_MEMBER_ADD",
    "GUILD_MEMBER_UPDATE",
    "GUILD_MEMBER_REMOVE",
    "GUILD_MEMBERS_CHUNK",
    "GUILD_ROLE_CREATE",
    "GUILD_ROLE_UPDATE",
    "GUILD_ROLE_DELETE",
    "MESSAGE_CREATE",
)
DB_OPERATIONS = ("load_snapshot", "apply_batch", "add_activity", "ping")


def populate(metrics: Metrics, *, now: float | None = None) -> None:
    """Set every metric as a healthy bot with two guilds would after a few hours of running."""
    now = time.time() if now is None else now
    for guild, count in MEMBERS.items():
        g = str(guild)
        metrics.discord_members.labels(guild=g).set(count)
        metrics.database_members.labels(guild=g, status="active").set(count - 40)
        metrics.database_members.labels(guild=g, status="inactive").set(40)
        metrics.database_members.labels(guild=g, status="left").set(312)
        metrics.coverage_ratio.labels(guild=g).set(1.0)
        metrics.guild_ready.labels(guild=g).set(1)
        metrics.chunking_progress.labels(guild=g).set(1.0)
        for kind in DRIFT_KINDS:
            metrics.drift.labels(guild=g, kind=kind).set(0)
        for kind in COUNT_AUDIT_KINDS:
            metrics.count_audit_mismatch.labels(guild=g, kind=kind).set(0)
        for trigger in TRIGGERS:
            metrics.sync_runs.labels(guild=g, trigger=trigger, kind="users", outcome="success").inc(3)
        metrics.sync_runs.labels(guild=g, trigger="schedule", kind="drift_check", outcome="success").inc(12)
        metrics.sync_runs.labels(guild=g, trigger="command", kind="full", outcome="refused").inc()
        for kind in CHANGE_KINDS:
            metrics.changes_applied.labels(guild=g, kind=kind).inc(5)
        metrics.last_success.labels(guild=g).set(now - 90)
    for kind in RUN_KINDS:
        for seconds in (0.02, 0.3, 4.2):
            metrics.sync_duration.labels(kind=kind).observe(seconds)
    metrics.errors.labels(stage="store").inc(2)
    metrics.queue_depth.set(0)
    metrics.runs_in_progress.set(0)
    for event in GATEWAY_EVENTS:
        metrics.gateway_events.labels(type=event).inc(40)
    for seconds in (0.012, 0.03, 0.08, 0.4):
        metrics.event_lag.observe(seconds)
    metrics.activity_buffer.set(17)
    metrics.backfill_messages.inc(1234)
    for guild in MEMBERS:
        metrics.backfill_channels_pending.labels(guild=str(guild)).set(0)
    metrics.backfill_channels_skipped.labels(reason="forbidden").inc()
    metrics.activity_duplicates.labels(source="live").inc(3)
    for operation in DB_OPERATIONS:
        for seconds in (0.0007, 0.004, 0.09):
            metrics.db_latency.labels(operation=operation).observe(seconds)
    for shard in SHARDS:
        metrics.gateway_connected.labels(shard=str(shard)).set(1)
        metrics.heartbeat_latency.labels(shard=str(shard)).set(0.041)
    metrics.database_up.set(1)
    for job in SCHEDULER_JOBS:
        metrics.job_runs.labels(job_name=job, outcome="success").inc(4)
        metrics.job_last_run.labels(job_name=job).set(now - 60)
        metrics.job_duration.labels(job_name=job).observe(1.7)


def tick(metrics: Metrics) -> None:
    """A moment of live traffic, so that rates move between scrapes."""
    guild = str(GUILDS[0])
    metrics.gateway_events.labels(type="GUILD_MEMBER_UPDATE").inc()
    metrics.gateway_events.labels(type="MESSAGE_CREATE").inc(3)
    metrics.event_lag.observe(0.02)
    metrics.db_latency.labels(operation="apply_batch").observe(0.003)
    metrics.sync_runs.labels(guild=guild, trigger="gateway", kind="users", outcome="success").inc()
    metrics.sync_duration.labels(kind="users").observe(0.04)
    metrics.changes_applied.labels(guild=guild, kind="member_updated").inc()
