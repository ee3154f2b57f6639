"""What `/sync` says: progress lines, the final report embed and the stats embed.

Pure formatting from the engine's values to hikari embeds, so every reply reads the same whichever
subcommand produced it.
"""

from __future__ import annotations

__all__ = ["GuildStats", "member_embed", "progress_text", "report_embed", "stats_embed"]

import typing

import attrs
import hikari

from reconciler.engine.count_audit import COUNT_AUDIT_KIND
from reconciler.engine.runs import Outcome

if typing.TYPE_CHECKING:
    import datetime
    from collections.abc import Mapping, Sequence

    from reconciler.domain.health import DriftCounts, Verdict
    from reconciler.engine.runs import RunProgress, RunReport
    from reconciler.store.api import HistoryEntry, MemberRecord, StoreStats, SyncRun

_COLOURS: typing.Final = {
    Outcome.SUCCESS: hikari.Color(0x2ECC71),
    Outcome.PARTIAL: hikari.Color(0xF1C40F),
    Outcome.REFUSED: hikari.Color(0xE67E22),
    Outcome.FAILED: hikari.Color(0xE74C3C),
    Outcome.SKIPPED: hikari.Color(0x95A5A6),
}
_ERRORS_SHOWN: typing.Final = 5
_AUDIT_NOTE_CHARS: typing.Final = 900  # an embed field holds 1024 characters


def progress_text(progress: RunProgress) -> str:
    return f"⏳ /sync {progress.kind.value}: {progress.describe()}"


def report_embed(report: RunReport, *, title: str) -> hikari.Embed:
    """The final edit of a `/sync` reply: counts, duration, and the first errors with their users."""
    counts = report.counts
    embed = hikari.Embed(
        title=f"{title}: {report.outcome.value}",
        colour=_COLOURS[report.outcome],
        description=report.reason,
    )
    for name, value in (
        ("Created", counts.created),
        ("Updated", counts.updated),
        ("Skipped", report.skipped),
        ("Left", counts.left),
        ("Rejoined", counts.rejoined),
        ("Inactive", report.inactive),
        ("Role links", f"+{counts.links_added:,} / -{counts.links_removed:,}"),
        ("Roles", f"+{counts.roles_created:,} ~{counts.roles_updated:,} -{counts.roles_deleted:,}"),
        ("Errors", report.errors),
    ):
        embed.add_field(name=name, value=value if isinstance(value, str) else f"{value:,}", inline=True)
    if report.error_sample:
        lines = [f"`{user_id}`: {reason[:120]}" for user_id, reason in report.error_sample[:_ERRORS_SHOWN]]
        more = report.errors - len(lines)
        if more > 0:
            lines.append(f"... and {more:,} more")
        embed.add_field(name="First errors", value="\n".join(lines), inline=False)
    embed.set_footer(f"{report.duration:.1f} s · run #{report.run_id}" if report.run_id else f"{report.duration:.1f} s")
    return embed


@attrs.frozen(kw_only=True)
class GuildStats:
    """Everything `/sync stats` shows, gathered at one moment."""

    discord_members: int
    stored: StoreStats
    drift: DriftCounts | None
    coverage: float | None
    last_runs: Mapping[str, SyncRun]
    verdict: Verdict
    reason: str
    top_channels: Sequence[tuple[int, int]] = ()
    """The busiest channels of the last 7 days: (channel id, messages)."""
    activity_status: str = ""
    """"activity complete since ..." or the backfill's progress."""


def _when(moment: datetime.datetime | None, now: datetime.datetime) -> str:
    if moment is None:
        return "never"
    seconds = (now - moment).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _who(run: SyncRun, now: datetime.datetime) -> str:
    """The trigger; for a row summing gateway runs, how many since when (one row per period, not per run)."""
    if run.runs <= 1:
        return run.trigger
    return f"{run.runs:,} {run.trigger} runs since {_when(run.started_at, now)}"


def _count_audit(run: SyncRun | None, now: datetime.datetime) -> str:
    """The last count audit: what it found (its note) and when; the drift check cannot see what it sees."""
    if run is None:
        return "not audited yet"
    when = _when(run.finished_at or run.started_at, now)
    if run.outcome is None:
        return f"audit running (started {when})"
    found = (run.error_sample or "")[:_AUDIT_NOTE_CHARS] or run.outcome
    prefix = "" if run.outcome == Outcome.SUCCESS.value else f"{run.outcome}: "
    return f"{prefix}{found} ({when})"


def stats_embed(stats: GuildStats, *, now: datetime.datetime) -> hikari.Embed:
    stored = stats.stored
    by_status = stored.members_by_status
    embed = hikari.Embed(title=f"Replica health: {stats.verdict.value}", description=stats.reason)
    embed.add_field(name="On Discord", value=f"{stats.discord_members:,}", inline=True)
    embed.add_field(
        name="In the database",
        value=(
            f"{by_status.get('active', 0):,} active · {by_status.get('inactive', 0):,} inactive"
            f" · {by_status.get('left', 0):,} left"
        ),
        inline=True,
    )
    coverage = "n/a" if stats.coverage is None else f"{stats.coverage:.2%}"
    embed.add_field(name="Coverage", value=coverage, inline=True)
    embed.add_field(name="Drift now", value="unknown" if stats.drift is None else stats.drift.describe(), inline=False)
    embed.add_field(
        name="Discord's own counts", value=_count_audit(stats.last_runs.get(COUNT_AUDIT_KIND), now), inline=False
    )
    tracked = stored.tracked_since.isoformat() if stored.tracked_since else "no messages yet"
    embed.add_field(
        name="Messages",
        value=(
            f"today {stored.messages_today:,} · 7 d {stored.messages_7d:,} · 30 d {stored.messages_30d:,}\n"
            f"{stored.active_users_7d:,} members active in 7 d · tracked since {tracked}"
        ),
        inline=False,
    )
    if stats.activity_status:
        embed.add_field(name="Activity counting", value=stats.activity_status, inline=False)
    if stats.top_channels:
        embed.add_field(
            name="Top channels (7 d)",
            value="\n".join(f"<#{channel_id}> {messages:,}" for channel_id, messages in stats.top_channels),
            inline=False,
        )
    runs = [
        f"**{kind}**: {run.outcome or 'running'} {_when(run.finished_at or run.started_at, now)} ({_who(run, now)})"
        for kind, run in sorted(stats.last_runs.items())
    ]
    embed.add_field(name="Last runs", value="\n".join(runs) or "none yet", inline=False)
    return embed


def _stamp(moment: datetime.datetime | None) -> str:
    # Discord renders <t:...> in each reader's own time zone.
    return "—" if moment is None else f"<t:{int(moment.timestamp())}:f>"


def _event_line(entry: HistoryEntry) -> str:
    if entry.role_id is not None:
        what = f"{entry.kind} <@&{entry.role_id}>"
    elif entry.old_value is not None or entry.new_value is not None:
        what = f"{entry.kind}: `{entry.old_value or '—'}` → `{entry.new_value or '—'}`"
    else:
        what = entry.kind
    run = f" #{entry.run_id}" if entry.run_id is not None else ""
    return f"{_stamp(entry.observed_at)} {what[:150]} ({entry.source}{run})"


def member_embed(record: MemberRecord, *, now: datetime.datetime) -> hikari.Embed:
    """`/sync stats user:`: one member's record as the replica holds it, and its newest history."""
    name = record.nickname or record.global_name or record.username or str(record.user_id)
    embed = hikari.Embed(title=f"Member record: {name[:200]}", description=f"<@{record.user_id}> · `{record.user_id}`")
    embed.add_field(name="Status", value=record.status, inline=True)
    embed.add_field(name="Joined", value=_stamp(record.joined_at), inline=True)
    embed.add_field(name="First seen", value=_stamp(record.first_seen_at), inline=True)
    embed.add_field(name="Last seen", value=_stamp(record.last_seen_at), inline=True)
    if record.left_at is not None:
        embed.add_field(name="Left", value=_stamp(record.left_at), inline=True)
    embed.add_field(name="Messages", value=f"7 d {record.messages_7d:,} · 30 d {record.messages_30d:,}", inline=True)
    roles = " ".join(f"<@&{role_id}>" for role_id in record.role_ids)
    embed.add_field(name="Roles", value=roles[:1000] or "none", inline=False)
    boosting = "no" if record.premium_since is None else f"since {_stamp(record.premium_since)}"
    timeout = record.communication_disabled_until
    timed_out = f"until {_stamp(timeout)}" if timeout is not None and timeout > now else "no"
    embed.add_field(name="Boosting", value=boosting, inline=True)
    embed.add_field(name="Timed out", value=timed_out, inline=True)
    if record.pending:
        embed.add_field(name="Screening", value="pending", inline=True)
    lines = [_event_line(entry) for entry in record.recent_events]
    embed.add_field(name="History (newest first)", value="\n".join(lines)[:1024] or "no event yet", inline=False)
    return embed
