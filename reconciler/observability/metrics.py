"""Every Prometheus metric the bot exports, on a registry of its own.

One place defines names, types and labels, so the dashboard, the alert rules and the README table can
be checked against it. Labels are the guild id and small fixed enums only: never a user name or id,
which would make the series count grow with the member count.
"""

from __future__ import annotations

__all__ = [
    "ACTIVITY_SOURCES",
    "BACKFILL_SKIP_REASONS",
    "CHANGE_KINDS",
    "COUNT_AUDIT_KINDS",
    "DRIFT_KINDS",
    "ERROR_STAGES",
    "RETENTION_TABLES",
    "RUN_KINDS",
    "RUN_OUTCOMES",
    "SCHEDULER_JOBS",
    "TRIGGERS",
    "Metrics",
]

import contextlib
import math
import typing

import prometheus_client
from prometheus_client.metrics import MetricWrapperBase

from reconciler.domain.counts import COUNT_MISMATCH_KINDS

TRIGGERS: typing.Final = ("startup", "gateway", "command", "schedule")
RUN_KINDS: typing.Final = ("users", "roles", "cleanup", "full", "drift_check", "relist", "count_audit")
RUN_OUTCOMES: typing.Final = ("success", "partial", "refused", "failed", "skipped")
DRIFT_KINDS: typing.Final = ("missing", "stale", "departed", "rejoined", "role_links", "roles")
CHANGE_KINDS: typing.Final = (
    "member_created",
    "member_updated",
    "member_left",
    "member_rejoined",
    "member_inactive",
    "role_link_added",
    "role_link_removed",
    "role_created",
    "role_updated",
    "role_deleted",
)
# The scheduler's jobs (the `job_name` label); the alert rules name them, so a new job belongs here too.
SCHEDULER_JOBS: typing.Final = ("drift_check", "relist", "cleanup", "count_audit")
# What the count audit compares: member difference, roles whose holders differ, role membership difference.
COUNT_AUDIT_KINDS: typing.Final = COUNT_MISMATCH_KINDS
# Tables the nightly retention prunes (the `table` label of reconciler_retention_deleted_rows_total).
RETENTION_TABLES: typing.Final = ("sync_runs", "scheduler_slots", "member_events")
ACTIVITY_SOURCES: typing.Final = ("live", "backfill")
BACKFILL_SKIP_REASONS: typing.Final = ("forbidden", "too_old")
ERROR_STAGES: typing.Final = ("gateway", "chunking", "diff", "store", "activity", "command", "scheduler", "guard")

# Labels a child's samples carry beyond the metric's own labels (a histogram's bucket bound).
_SAMPLE_LABELS: typing.Final = frozenset({"le", "quantile"})

# Buckets sized for what is measured: a reconcile runs milliseconds to minutes; a query, micro to seconds.
_RUN_BUCKETS: typing.Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_LAG_BUCKETS: typing.Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30)
_DB_BUCKETS: typing.Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """The bot's metrics; one instance per application, so tests can run several side by side."""

    def __init__(self, registry: prometheus_client.CollectorRegistry | None = None) -> None:
        self.registry = registry or prometheus_client.CollectorRegistry(auto_describe=True)
        r = self.registry

        # What Discord says and what the database holds.
        self.discord_members = prometheus_client.Gauge(
            "reconciler_discord_members", "Members of the guild on Discord (hikari's cache).", ["guild"], registry=r
        )
        self.database_members = prometheus_client.Gauge(
            "reconciler_database_members", "Member rows in the database by status.", ["guild", "status"], registry=r
        )
        self.coverage_ratio = prometheus_client.Gauge(
            "reconciler_coverage_ratio",
            "Members on Discord that are active or inactive in the database, over members on Discord.",
            ["guild"],
            registry=r,
        )
        self.drift = prometheus_client.Gauge(
            "reconciler_drift",
            "Differences between Discord and the database found by the last check, by kind.",
            ["guild", "kind"],
            registry=r,
        )
        self.count_audit_mismatch = prometheus_client.Gauge(
            "reconciler_count_audit_mismatch",
            "Difference between Discord's own counts and the database's after the last count audit, by kind.",
            ["guild", "kind"],
            registry=r,
        )
        self.guild_ready = prometheus_client.Gauge(
            "reconciler_guild_ready", "1 once the guild's member chunking has completed.", ["guild"], registry=r
        )
        self.chunking_progress = prometheus_client.Gauge(
            "reconciler_chunking_progress_ratio",
            "Member chunks received over chunks expected for the guild's current request.",
            ["guild"],
            registry=r,
        )

        # Reconcile runs.
        self.sync_runs = prometheus_client.Counter(
            "reconciler_sync_runs",
            "Reconcile runs by trigger, kind and outcome.",
            ["guild", "trigger", "kind", "outcome"],
            registry=r,
        )
        self.sync_duration = prometheus_client.Histogram(
            "reconciler_sync_duration_seconds",
            "Wall time of a reconcile run.",
            ["kind"],
            buckets=_RUN_BUCKETS,
            registry=r,
        )
        self.changes_applied = prometheus_client.Counter(
            "reconciler_changes_applied", "Changes written to the database by kind.", ["guild", "kind"], registry=r
        )
        self.errors = prometheus_client.Counter(
            "reconciler_errors", "Errors by stage (a member that failed to write counts once).", ["stage"], registry=r
        )
        self.last_success = prometheus_client.Gauge(
            "reconciler_last_successful_reconcile_timestamp_seconds",
            "Unix time of the guild's last reconcile that ended in success.",
            ["guild"],
            registry=r,
        )
        self.queue_depth = prometheus_client.Gauge(
            "reconciler_queue_depth", "Guilds with a reconcile request waiting in the queue.", registry=r
        )
        self.runs_in_progress = prometheus_client.Gauge(
            "reconciler_runs_in_progress", "Reconcile runs executing now.", registry=r
        )

        # The live path.
        self.gateway_events = prometheus_client.Counter(
            "reconciler_gateway_events", "Gateway events handled by type.", ["type"], registry=r
        )
        self.event_lag = prometheus_client.Histogram(
            "reconciler_event_lag_seconds",
            "Time from a gateway event's arrival to its change being committed in the database.",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.activity_buffer = prometheus_client.Gauge(
            "reconciler_activity_buffer_size",
            "Distinct (guild, user, day) activity entries waiting to be flushed.",
            registry=r,
        )
        self.activity_duplicates = prometheus_client.Counter(
            "reconciler_activity_duplicates",
            "Messages seen again (a resume replay, a backfill overlapping the live path) and not counted twice.",
            ["source"],
            registry=r,
        )
        self.backfill_messages = prometheus_client.Counter(
            "reconciler_backfill_messages",
            "Messages fetched from Discord's history by the backfill and counted.",
            registry=r,
        )
        self.backfill_channels_pending = prometheus_client.Gauge(
            "reconciler_backfill_channels_pending",
            "Channels of a guild whose gaps are still being fetched.",
            ["guild"],
            registry=r,
        )
        self.backfill_channels_skipped = prometheus_client.Counter(
            "reconciler_backfill_channels_skipped",
            "Channels the backfill skipped: forbidden (403 Missing Access) or a gap given up (older than the maximum age).",
            ["reason"],
            registry=r,
        )
        self.db_latency = prometheus_client.Histogram(
            "reconciler_db_operation_seconds",
            "Latency of database operations.",
            ["operation"],
            buckets=_DB_BUCKETS,
            registry=r,
        )
        self.gateway_connected = prometheus_client.Gauge(
            "reconciler_gateway_connected", "1 while the shard's gateway session is alive.", ["shard"], registry=r
        )
        self.heartbeat_latency = prometheus_client.Gauge(
            "reconciler_gateway_heartbeat_latency_seconds",
            "Last heartbeat round trip of the shard.",
            ["shard"],
            registry=r,
        )
        self.database_up = prometheus_client.Gauge(
            "reconciler_database_up", "1 if the last database ping succeeded.", registry=r
        )

        # The scheduler. The label is `job_name`, not `job`: Prometheus sets `job` on every scraped series
        # (the scrape job) and would rename ours to `exported_job`, so `by (job)` would silently group by
        # the scrape job instead (kube-state-metrics names its label `job_name` for the same reason).
        self.job_runs = prometheus_client.Counter(
            "reconciler_scheduler_job_runs",
            "Scheduled job runs by job and outcome.",
            ["job_name", "outcome"],
            registry=r,
        )
        self.job_missed = prometheus_client.Counter(
            "reconciler_scheduler_job_missed", "Scheduled runs missed (misfired or skipped).", ["job_name"], registry=r
        )
        self.job_last_run = prometheus_client.Gauge(
            "reconciler_scheduler_job_last_run_timestamp_seconds",
            "Unix time the job last ran.",
            ["job_name"],
            registry=r,
        )
        self.job_duration = prometheus_client.Histogram(
            "reconciler_scheduler_job_duration_seconds",
            "Wall time of a scheduled job.",
            ["job_name"],
            buckets=_RUN_BUCKETS,
            registry=r,
        )

        # Retention.
        self.retention_deleted = prometheus_client.Counter(
            "reconciler_retention_deleted_rows",
            "Bookkeeping rows deleted by the nightly retention, by table.",
            ["table"],
            registry=r,
        )

        # Series that exist from the start, so a rate or an alert over them has data before the first error.
        for stage in ERROR_STAGES:
            self.errors.labels(stage=stage)
        for job in SCHEDULER_JOBS:
            self.job_missed.labels(job_name=job)
        for table in RETENTION_TABLES:
            self.retention_deleted.labels(table=table)

        for source in ACTIVITY_SOURCES:
            self.activity_duplicates.labels(source=source)
        for reason in BACKFILL_SKIP_REASONS:
            self.backfill_channels_skipped.labels(reason=reason)

    def publish_unaudited(self, guild_id: int) -> None:
        """The guild's count-audit series as NaN (not audited yet) unless an audit has set them.

        The dashboard's panel and the mismatch alert see the guild from the first scrape after its first
        run; NaN says "unknown", and an alert comparing it never fires.
        """
        guild = str(guild_id)
        for family in self.count_audit_mismatch.collect():
            if any(sample.labels.get("guild") == guild for sample in family.samples):
                return
        for kind in COUNT_AUDIT_KINDS:
            self.count_audit_mismatch.labels(guild=guild, kind=kind).set(math.nan)

    def remove_guild(self, guild_id: int) -> int:
        """Drop every series labelled with the guild, across every metric: the bot left it, and a year of
        joins and leaves must not leave the scrape growing with guilds it is no longer in. Returns how
        many series were removed."""
        guild = str(guild_id)
        removed = 0
        for metric in vars(self).values():
            if not isinstance(metric, MetricWrapperBase):
                continue
            children: set[tuple[str, ...]] = set()
            for family in metric.collect():
                for sample in family.samples:
                    if sample.labels.get("guild") == guild:
                        # A sample's labels list the metric's own labels first, in their declared order.
                        children.add(tuple(v for k, v in sample.labels.items() if k not in _SAMPLE_LABELS))
            for values in children:
                with contextlib.suppress(KeyError):  # removed meanwhile
                    metric.remove(*values)
                    removed += 1
        return removed

    def exposition(self) -> bytes:
        """The classic text format (promtool misreads OpenMetrics)."""
        return prometheus_client.generate_latest(self.registry)
