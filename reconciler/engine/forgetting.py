"""Forgotten users: Discord's state as the replica may keep it, without their names.

`reconciler user forget` erases a user's names and puts the id on the store's forgotten list; every
run and every drift check reads that list and sees such a user through `redact` (the id, roles,
times and flags stay, so counts and coverage stay right). The live path is the same run, so the
names are never stored again, whatever process did the forgetting.
"""

from __future__ import annotations

__all__ = ["ForgettingDesiredState", "forgetting"]

import logging
import typing

import attrs

from reconciler.domain import redact

if typing.TYPE_CHECKING:
    from collections.abc import Set as AbstractSet

    from reconciler.domain import GuildSnapshot, Scope
    from reconciler.engine.planning import DesiredState

_LOGGER: typing.Final = logging.getLogger(__name__)


class ForgettingDesiredState:
    """A `DesiredState` whose snapshots show the forgotten users redacted."""

    def __init__(self, desired: DesiredState, forgotten: AbstractSet[int]) -> None:
        self._desired = desired
        self._forgotten = forgotten

    def snapshot(self, guild_id: int, scope: Scope) -> GuildSnapshot:
        snapshot = self._desired.snapshot(guild_id, scope)
        members = snapshot.members
        hits = [uid for uid in self._forgotten if uid in members]
        if not hits:
            return snapshot
        redacted = dict(members)
        for uid in hits:
            redacted[uid] = redact(members[uid])
        return attrs.evolve(snapshot, members=redacted)

    def member_ids(self, guild_id: int) -> AbstractSet[int]:
        return self._desired.member_ids(guild_id)

    def is_ready(self, guild_id: int) -> bool:
        return self._desired.is_ready(guild_id)

    def ready_token(self, guild_id: int) -> int | None:
        return self._desired.ready_token(guild_id)

    def member_count(self, guild_id: int) -> int:
        return self._desired.member_count(guild_id)


def forgetting(desired: DesiredState, forgotten: AbstractSet[int]) -> DesiredState:
    """`desired` itself when nobody is forgotten (no cost), else a redacting view of it."""
    return ForgettingDesiredState(desired, forgotten) if forgotten else desired
