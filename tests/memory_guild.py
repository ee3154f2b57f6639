"""What hikari's cache would say about a guild: the `DesiredState` protocol over plain values.

Tests of the engine and the drift check read Discord's side from here and the database's from a real
store; a test can reload the guild (a new ready token) or change it while a run reads it.
"""

from __future__ import annotations

__all__ = ["MemoryGuild"]

import typing

from reconciler.domain import GuildSnapshot, MemberState, RoleState, Scope

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Mapping


class MemoryGuild:
    """Members and roles held in dicts; `snapshot` reads them as the cache reader reads hikari's cache."""

    def __init__(self, members: dict[int, MemberState], roles: Mapping[int, RoleState] | None = None) -> None:
        self.members = members
        self.roles = dict(roles or {})
        self.token = 1
        self.reload_after_reads: int | None = None
        """Reads of the ready token before the guild is reloaded (GUILD_CREATE emptied and refilled it)."""
        self.on_snapshot: Callable[[Scope], None] | None = None
        """Called before each snapshot: a test changes the guild while a run reads it."""
        self.snapshots = 0

    def snapshot(self, guild_id: int, scope: Scope) -> GuildSnapshot:
        if self.on_snapshot is not None:
            self.on_snapshot(scope)
        self.snapshots += 1
        if scope.user_ids is None:
            members = dict(self.members)
        else:
            members = {uid: self.members[uid] for uid in sorted(scope.user_ids) if uid in self.members}
        return GuildSnapshot(
            guild_id=guild_id, members=members, roles=dict(self.roles) if scope.roles else {}, scope=scope
        )

    def member_ids(self, guild_id: int) -> set[int]:
        return set(self.members)

    def is_ready(self, guild_id: int) -> bool:
        return True

    def ready_token(self, guild_id: int) -> int | None:
        if self.reload_after_reads is not None:
            self.reload_after_reads -= 1
            if self.reload_after_reads < 0:
                self.token += 1
        return self.token

    def member_count(self, guild_id: int) -> int:
        return len(self.members)
