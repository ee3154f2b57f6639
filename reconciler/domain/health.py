"""The health verdict of a guild's replica: one word an admin can act on, and the reason for it."""

from __future__ import annotations

__all__ = ["DriftCounts", "Verdict", "judge"]

import datetime
import enum
import typing

import attrs

from reconciler.domain.wording import drift_text

if typing.TYPE_CHECKING:
    from reconciler.domain.changes import ChangeCounts


class Verdict(enum.StrEnum):
    HEALTHY = "healthy"
    DRIFTING = "drifting"
    STALE = "stale"
    NOT_READY = "not ready"


@attrs.define(frozen=True, kw_only=True, slots=True)
class DriftCounts:
    """Differences between Discord and the database by kind (the `reconciler_drift` metric's kinds)."""

    missing: int = 0
    stale: int = 0
    departed: int = 0
    rejoined: int = 0
    role_links: int = 0
    roles: int = 0

    @classmethod
    def from_counts(cls, counts: ChangeCounts) -> DriftCounts:
        return cls(
            missing=counts.created,
            stale=counts.updated,
            departed=counts.left,
            rejoined=counts.rejoined,
            role_links=counts.links_added + counts.links_removed,
            roles=counts.roles_created + counts.roles_updated + counts.roles_deleted,
        )

    @property
    def total(self) -> int:
        return self.missing + self.stale + self.departed + self.rejoined + self.role_links + self.roles

    def by_kind(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in attrs.fields(DriftCounts)}

    def describe(self) -> str:
        return drift_text(self.by_kind())


def judge(
    *,
    ready: bool,
    readiness_detail: str,
    drift: DriftCounts | None,
    last_reconciled_at: datetime.datetime | None,
    now: datetime.datetime,
    stale_after: datetime.timedelta = datetime.timedelta(hours=24),
) -> tuple[Verdict, str]:
    """Worst first: a guild still loading cannot be judged; drift beats age; age beats nothing."""
    if not ready or drift is None:
        return Verdict.NOT_READY, readiness_detail
    if drift.total:
        return Verdict.DRIFTING, f"{drift.total:,} difference(s): {drift.describe()}"
    if last_reconciled_at is None:
        return Verdict.STALE, "never fully reconciled"
    age = now - last_reconciled_at
    if age > stale_after:
        hours = age.total_seconds() / 3600
        return (
            Verdict.STALE,
            f"last full reconcile {hours:.0f} h ago (more than {stale_after.total_seconds() / 3600:.0f} h)",
        )
    return Verdict.HEALTHY, "database equals Discord"
