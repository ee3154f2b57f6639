"""Discord's own member counts against the replica's: the cheap audit that catches what the cache missed.

The drift check compares the database with hikari's cache; when the cache itself missed an event, both
agree and both are wrong. Discord serves a guild's member count and the member count of every role for
two REST calls, whatever the guild's size: if they differ from the replica's, something was missed.
"""

from __future__ import annotations

__all__ = ["COUNT_MISMATCH_KINDS", "CountMismatch", "GuildCounts", "compare_counts"]

import typing

import attrs

if typing.TYPE_CHECKING:
    from collections.abc import Mapping

COUNT_MISMATCH_KINDS: typing.Final = ("members", "roles", "role_links")
"""The `kind` label of `reconciler_count_audit_mismatch`, in the order `CountMismatch.by_kind` gives."""


@attrs.define(frozen=True, kw_only=True, slots=True)
class GuildCounts:
    """How many members a guild has, and how many hold each role (@everyone excluded, as Discord does)."""

    members: int
    role_members: Mapping[int, int] = attrs.field(factory=dict[int, int])
    """Role id to the number of members holding it; a role absent here holds nobody."""


@attrs.define(frozen=True, kw_only=True, slots=True)
class CountMismatch:
    """Where Discord's counts and the replica's differ; empty when they agree."""

    discord_members: int
    replica_members: int
    roles: Mapping[int, tuple[int, int]] = attrs.field(factory=dict[int, tuple[int, int]])
    """Role id to (Discord's count, the replica's count), only for roles whose counts differ."""

    @property
    def members(self) -> int:
        """Members one side has and the other lacks, at the least (the counts' difference)."""
        return abs(self.discord_members - self.replica_members)

    @property
    def role_links(self) -> int:
        """Role memberships one side has and the other lacks, at the least."""
        return sum(abs(discord - replica) for discord, replica in self.roles.values())

    @property
    def total(self) -> int:
        return self.members + self.role_links

    def by_kind(self) -> dict[str, int]:
        """The gauge's values: member difference, roles whose counts differ, role membership difference."""
        return {"members": self.members, "roles": len(self.roles), "role_links": self.role_links}

    def describe(self, *, roles_shown: int = 3) -> str:
        """One line for `sync_runs`, the log and `/sync stats`: what differs, with the numbers."""
        if not self.total:
            return "counts match"
        parts: list[str] = []
        if self.members:
            parts.append(f"members: Discord {self.discord_members:,}, replica {self.replica_members:,}")
        if self.roles:
            worst = sorted(self.roles.items(), key=lambda item: (-abs(item[1][0] - item[1][1]), item[0]))
            shown = ", ".join(f"{role_id} {d:,} vs {r:,}" for role_id, (d, r) in worst[:roles_shown])
            more = len(self.roles) - roles_shown
            parts.append(f"{len(self.roles)} role(s) differ ({shown}{f', +{more} more' if more > 0 else ''})")
        return "; ".join(parts)


def compare_counts(discord: GuildCounts, replica: GuildCounts) -> CountMismatch:
    """Discord's counts against the replica's; a role missing from one side counts as held by nobody."""
    roles: dict[int, tuple[int, int]] = {}
    for role_id in sorted(discord.role_members.keys() | replica.role_members.keys()):
        theirs = discord.role_members.get(role_id, 0)
        ours = replica.role_members.get(role_id, 0)
        if theirs != ours:
            roles[role_id] = (theirs, ours)
    return CountMismatch(discord_members=discord.members, replica_members=replica.members, roles=roles)
