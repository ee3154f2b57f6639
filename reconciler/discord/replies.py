"""What `/sync` says: progress lines, the final report embed and the stats embed.

Pure formatting from the engine's values to hikari embeds, so every reply reads the same whichever
subcommand produced it.
"""

from __future__ import annotations

__all__ = ["GuildStats", "progress_text", "report_embed", "stats_embed"]

import typing

import attrs
import hikari

from reconciler.engine.runs import Outcome

if typing.TYPE_CHECKING:
    import datetime
    from collections.abc import Mapping, Sequence

    from reconciler.domain.health import DriftCounts, Verdict
    from reconciler.engine.runs import RunProgress, RunReport
    from reconciler.store.api import StoreStats, SyncRun

_COLOURS: typing.Final = {
    Outcome.SUCCESS: hikari.Color(0x2ECC71),
    Outcome.PARTIAL: hikari.Color(0xF1C40F),
    Outcome.REFUSED: hikari.Color(0xE67E22),
    Outcome.FAILED: hikari.Color(0xE74C3C),
    Outcome.SKIPPED: hikari.Color(0x95A5A6),
}
_ERRORS_SHOWN: typing.Final = 5


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
        ("Role links", f"+{counts.links_added} / -{counts.links_removed}"),
        ("Roles", f"+{counts.roles_created} ~{counts.roles_updated} -{counts.roles_deleted}"),
        ("Errors", report.errors),
    ):
        embed.add_field(name=name, value=str(value), inline=True)
    if report.error_sample:
        lines = [f"`{user_id}`: {reason[:120]}" for user_id, reason in report.error_sample[:_ERRORS_SHOWN]]
        more = report.errors - len(lines)
        if more > 0:
            lines.append(f"... and {more} more")
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
        f"**{kind}**: {run.outcome or 'running'} {_when(run.finished_at or run.started_at, now)} ({run.trigger})"
        for kind, run in sorted(stats.last_runs.items())
    ]
    embed.add_field(name="Last runs", value="\n".join(runs) or "none yet", inline=False)
    return embed
