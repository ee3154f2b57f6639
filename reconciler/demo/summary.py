"""The verdict at the end of the demo: the database against Discord's ground truth and against the bot's cache.

Two independent comparisons: the sandbox's own state (what Discord holds) read against the tables with
plain SQL, and the bot's drift plan (`Reconciler.plan`). The demo passes only if every member on the
server is in the database and both comparisons find nothing.
"""

from __future__ import annotations

__all__ = ["DemoSummary", "TruthDiff", "compare_with_truth", "render_summary"]

import dataclasses
import logging
import typing

from reconciler.domain.wording import drift_text

# "Members in the database:" and a space: the values start in one column, as far left as they can.
_LABEL_WIDTH: typing.Final = 25

if typing.TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from reconciler.demo.replica import ReplicaRow, RunCount
    from reconciler.demo.terminal import Terminal
    from reconciler.domain.health import DriftCounts
    from reconciler.sandbox import MemberInfo, RoleInfo

_LOGGER: typing.Final = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TruthDiff:
    """Differences between Discord's ground truth and the database, by kind."""

    server_members: int
    missing: int = 0
    """On the server, not present in the database."""
    extra: int = 0
    """Present in the database, not on the server (a departure not recorded)."""
    stale: int = 0
    """Present on both sides with a different nickname, name, avatar or bot flag."""
    role_links: int = 0
    """Member-role links on one side only."""
    roles: int = 0
    """Roles missing, extra or different."""

    @property
    def total(self) -> int:
        return self.missing + self.extra + self.stale + self.role_links + self.roles

    @property
    def coverage(self) -> float:
        if not self.server_members:
            return 1.0
        return (self.server_members - self.missing) / self.server_members

    def describe(self) -> str:
        return drift_text(
            {
                "missing": self.missing,
                "extra": self.extra,
                "stale": self.stale,
                "role_links": self.role_links,
                "roles": self.roles,
            }
        )


def compare_with_truth(
    *,
    members: Mapping[int, MemberInfo],
    roles: Mapping[int, RoleInfo],
    rows: Mapping[int, ReplicaRow],
    links: set[tuple[int, int]],
    stored_roles: Mapping[int, tuple[str, int, int, int, bool]],
) -> TruthDiff:
    """Count what differs between the server (sandbox) and the database, field by field."""
    missing = sum(1 for uid in members if uid not in rows)
    extra = sum(1 for uid in rows if uid not in members)
    stale = 0
    for uid, member in members.items():
        row = rows.get(uid)
        if row is None:
            continue
        if (row.nickname, row.username, row.global_name, row.avatar_hash, row.is_bot) != (
            member.nick,
            member.username,
            member.global_name,
            member.avatar,
            member.bot,
        ):
            stale += 1
    truth_links = {(uid, rid) for uid, m in members.items() for rid in m.role_ids}
    present_links = {(uid, rid) for uid, rid in links if uid in rows}
    role_diff = len(truth_links ^ present_links)
    truth_roles = {r.id: (r.name, r.color, r.position, r.permissions, r.managed) for r in roles.values()}
    roles_diff = sum(
        1 for rid in truth_roles.keys() | stored_roles.keys() if truth_roles.get(rid) != stored_roles.get(rid)
    )
    return TruthDiff(
        server_members=len(members),
        missing=missing,
        extra=extra,
        stale=stale,
        role_links=role_diff,
        roles=roles_diff,
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DemoSummary:
    """Everything the final block shows; `passed` decides the exit code."""

    truth: TruthDiff
    plan_drift: DriftCounts | None
    """The bot's own drift plan (cache vs database); None if the guild was not ready at the end."""
    database_present: int
    database_left: int
    runs: Sequence[RunCount]
    errors: Mapping[str, int]
    """Errors the bot counted (`reconciler_errors_total`), by stage, zeros left out."""
    messages_posted: int
    messages_counted: int
    database: str
    metrics_url: str | None
    log_file: str
    elapsed: float
    interrupted: bool

    @property
    def drift(self) -> int:
        plan = self.plan_drift.total if self.plan_drift is not None else 0
        return plan + self.truth.total

    @property
    def passed(self) -> bool:
        return self.plan_drift is not None and self.truth.coverage == 1.0 and self.drift == 0

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


def _runs_text(runs: Sequence[RunCount]) -> str:
    total = sum(r.runs for r in runs)
    by_trigger: dict[str, int] = {}
    for run in runs:
        by_trigger[run.trigger] = by_trigger.get(run.trigger, 0) + run.runs
    triggers = ", ".join(f"{trigger} {count:,}" for trigger, count in sorted(by_trigger.items()))
    bad = sum(r.runs for r in runs if r.outcome not in ("success", "skipped"))
    return f"{total:,} ({triggers}) · {bad:,} not successful"


def _errors_text(errors: Mapping[str, int]) -> str:
    total = sum(errors.values())
    if not total:
        return "0"
    return f"{total:,} (" + ", ".join(f"{stage} {count:,}" for stage, count in sorted(errors.items())) + ")"


def render_summary(terminal: Terminal, summary: DemoSummary) -> None:
    truth = summary.truth
    plan = "unknown (guild not ready)" if summary.plan_drift is None else summary.plan_drift.describe()
    terminal.line()
    title = "Summary" + (" (interrupted)" if summary.interrupted else "")
    terminal.line(f"══ {title} {'═' * (74 - len(title))}")
    metrics = f"{summary.metrics_url}/metrics (served while the demo ran)" if summary.metrics_url else "not served"
    terminal.table(
        [
            ("Members on the server", f"{truth.server_members:,} (the sandbox's ground truth)"),
            ("Members in the database", f"{summary.database_present:,} present · {summary.database_left:,} left"),
            ("Coverage", f"{truth.coverage:.2%}"),
            (
                "Drift",
                f"{summary.drift:,} (Discord vs database: {truth.describe()}; bot's cache vs database: {plan})",
            ),
            ("Sync runs", _runs_text(summary.runs)),
            ("Errors", _errors_text(summary.errors)),
            ("Messages", f"{summary.messages_posted:,} posted · {summary.messages_counted:,} counted in the database"),
            ("Database", summary.database),
            ("Metrics", metrics),
            ("Bot log", summary.log_file),
            ("Elapsed", f"{summary.elapsed:.1f} s"),
        ],
        width=_LABEL_WIDTH,
    )
    verdict = (
        "PASS: the database equals the server"
        if summary.passed
        else "FAIL: the database does not equal the server (exit code 1)"
    )
    terminal.table([("Result", verdict)], width=_LABEL_WIDTH)
