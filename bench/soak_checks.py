"""What the soak measures: the replica against the sandbox, the bot's memory, bookkeeping rows, its log.

Every comparison reads the database with its own connection (`ReplicaView`, plain SQL) and the sandbox's
ground truth directly; nothing asks the bot what it thinks it wrote.
"""

from __future__ import annotations

__all__ = [
    "ExpectedNoise",
    "LogFinding",
    "ReplicaCheck",
    "RssSample",
    "check_replica",
    "growth_after",
    "percentile",
    "scan_log",
    "slope_mb_per_hour",
]

import dataclasses
import datetime
import re
import statistics
import typing

from reconciler.demo.summary import compare_with_truth

if typing.TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from reconciler.demo.replica import ReplicaView
    from reconciler.demo.summary import TruthDiff
    from reconciler.sandbox import DiscordSandbox


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaCheck:
    """The replica at a quiescent point against the sandbox: members, users, roles, links and departures."""

    truth: TruthDiff
    wrongly_left: int
    """Rows marked left for someone who never left."""
    unmarked_departures: int
    """Members the replica once had who left since, and whose row is not marked left."""
    present: frozenset[int]

    @property
    def exact(self) -> bool:
        return (
            self.truth.total == 0
            and self.truth.coverage == 1.0
            and not self.wrongly_left
            and not self.unmarked_departures
        )

    def describe(self) -> str:
        parts = [self.truth.describe()] if self.truth.total else []
        if self.wrongly_left:
            parts.append(f"{self.wrongly_left} wrongly marked left")
        if self.unmarked_departures:
            parts.append(f"{self.unmarked_departures} departures not marked left")
        return ", ".join(parts) or "exact"


async def check_replica(
    view: ReplicaView, sandbox: DiscordSandbox, guild_id: int, *, seen: frozenset[int]
) -> ReplicaCheck:
    """Compare now; `seen` holds every member an earlier exact check found in the replica."""
    members = sandbox.members(guild_id)
    rows = await view.present_members(guild_id)
    truth = compare_with_truth(
        members=members,
        roles=sandbox.roles(guild_id),
        rows=rows,
        links=await view.links(guild_id),
        stored_roles=await view.roles(guild_id),
    )
    left = await view.left_members(guild_id)
    # Every user the sandbox ever had in its one guild and does not have now has left it.
    departed = set(sandbox.truth.users) - set(members)
    return ReplicaCheck(
        truth=truth,
        wrongly_left=len(left - departed),
        unmarked_departures=len((seen - set(members)) - left),
        present=frozenset(rows),
    )


# -- memory -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RssSample:
    at: float
    """Seconds since the soak started."""
    life: int
    """Which process: 0 for the first, +1 after each kill -9 and restart."""
    rss: int


def slope_mb_per_hour(samples: Sequence[RssSample]) -> float | None:
    """Least-squares slope of RSS over time, MB per hour; None with fewer than two samples."""
    if len(samples) < 2 or samples[-1].at == samples[0].at:
        return None
    slope = statistics.linear_regression([s.at for s in samples], [s.rss for s in samples]).slope
    return slope * 3600 / 1e6


def growth_after(samples: Sequence[RssSample]) -> float | None:
    """Growth over the samples' span on their least-squares line (0.05 = 5 %): RSS swings by tens of MB
    with every relist, so two single samples would judge the swing, not the trend."""
    if len(samples) < 2 or samples[-1].at == samples[0].at:
        return None
    fit = statistics.linear_regression([s.at for s in samples], [s.rss for s in samples])
    first = fit.intercept + fit.slope * samples[0].at
    last = fit.intercept + fit.slope * samples[-1].at
    return last / first - 1


def percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# -- the bot's log ------------------------------------------------------------------------------------

_TS: typing.Final = re.compile(r"^ts=(\S+) level=(\w+) logger=(\S+) event=(\"(?:[^\"\\]|\\.)*\"|\S+)")
_ERROR_FIELD: typing.Final = re.compile(r" error=(\"(?:[^\"\\]|\\.)*\"|\S+)")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ExpectedNoise:
    """Error lines a fault is known to cause while it lasts: by logger, event and exception type."""

    fault: str
    logger: str
    event: str
    """A regular expression the whole event text must match."""
    errors: tuple[str, ...]
    """Regular expressions matched at the start of the line's `error=` field (type: message); empty
    means a line without an error field."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LogFinding:
    """An error line of the bot's log, and the fault window that explains it (None: unexpected)."""

    line: str
    explained_by: str | None


def _unquote(value: str) -> str:
    return value[1:-1].replace('\\"', '"') if value.startswith('"') else value


def scan_log(
    text: str,
    *,
    windows: Iterable[tuple[str, datetime.datetime, datetime.datetime]],
    expected: Iterable[ExpectedNoise],
) -> list[LogFinding]:
    """Every error line (level error/critical, a traceback, or a raw `Traceback` from outside logging),
    each explained by a fault window `(kind, from, to)` whose expected noise matches it, or not at all."""
    windows = list(windows)
    expected = list(expected)
    findings: list[LogFinding] = []
    for line in text.splitlines():
        match = _TS.match(line)
        if match is None:
            if "Traceback" in line or "Error" in line.split(":", 1)[0]:
                findings.append(LogFinding(line=line, explained_by=None))
            continue
        ts, level, logger, event = match.group(1), match.group(2), match.group(3), _unquote(match.group(4))
        if level not in {"error", "critical"} and " traceback=" not in line:
            continue
        error_match = _ERROR_FIELD.search(line)
        error = _unquote(error_match.group(1)) if error_match else ""
        at = datetime.datetime.fromisoformat(ts)
        explained = None
        for kind, start, end in windows:
            if not start <= at <= end:
                continue
            for noise in expected:
                if noise.fault != kind or noise.logger != logger or not re.fullmatch(noise.event, event):
                    continue
                if (not noise.errors and not error) or any(re.match(e, error) for e in noise.errors):
                    explained = kind
                    break
            if explained:
                break
        findings.append(LogFinding(line=line, explained_by=explained))
    return findings
