"""Planning a run: count both sides of the scope, then diff it a slice at a time, ready to be written as it goes.

A run first surveys the scope (the member ids in hikari's cache, the fingerprints in the database): that
alone tells how many members would be marked left, so the mass-departure guard decides before anything
is read in full or written. Then the scope is compared a slice of members at a time, and each slice's
change set goes to the store (`Store.apply_stream`) while the next one is read: at a million members the
first reconcile reads the cache (seconds of Python) while SQLite writes on its own thread, and a run
holds a slice in memory, not the guild.
"""

from __future__ import annotations

__all__ = ["SLICE_MEMBERS", "DesiredState", "GuildNotReadyError", "PlanProgress", "Survey", "plan_slices", "survey"]

import itertools
import logging
import typing

import attrs

from reconciler.domain import Scope, StoredSnapshot, compare_fingerprints, plan_changes

if typing.TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Sequence
    from collections.abc import Set as AbstractSet

    from reconciler.domain import ChangeSet, FingerprintMemo, GuildSnapshot, MemberState, StoredFingerprints
    from reconciler.store.api import Store

_LOGGER: typing.Final = logging.getLogger(__name__)

SLICE_MEMBERS: typing.Final = 10_000
"""Members compared at a time: read and diffed in about 0.1 s (the event loop answers heartbeats and
interactions in between) while the batches before them are written; a slice's dirty rows are read in
one query, so larger slices mean fewer queries when drift is spread thin."""


class GuildNotReadyError(Exception):
    """The guild's member list is still being loaded; the request waits for it."""


class DesiredState(typing.Protocol):
    """Where Discord's state comes from (hikari's cache in the bot)."""

    def snapshot(self, guild_id: int, scope: Scope) -> GuildSnapshot:
        """The members in scope present on Discord (in user id order for a set of ids), and the roles
        if the scope has them."""
        ...

    def member_ids(self, guild_id: int) -> AbstractSet[int]:
        """The user ids of every member on Discord now."""
        ...

    def is_ready(self, guild_id: int) -> bool: ...

    def ready_token(self, guild_id: int) -> int | None:
        """None while loading; changes whenever the guild's member list is reloaded."""
        ...

    def member_count(self, guild_id: int) -> int: ...


def check_ready(desired: DesiredState, guild_id: int, token: int) -> None:
    """Raise unless the guild's member list is still the one a run started on.

    hikari empties the cache on GUILD_CREATE at once but tells the readiness listener a moment later;
    after a database round trip the listener has run, so a token unchanged then proves that what was
    read before the round trip came from a whole member list.
    """
    if desired.ready_token(guild_id) != token:
        raise GuildNotReadyError(guild_id)


@attrs.frozen(kw_only=True)
class Survey:
    """Both sides of a run's scope, counted before anything is compared in full or written."""

    guild_id: int
    scope: Scope
    token: int
    """The guild's ready token when the survey read the cache (see `check_ready`)."""
    candidates: Sequence[int]
    """Every user id in scope on either side, in the order the run compares them."""
    stored: StoredFingerprints
    """The present (active or inactive) members in scope that the database holds, and their fingerprints."""
    departures: frozenset[int]
    """Present in the database, gone from Discord: the members this run marks left."""

    @property
    def present(self) -> int:
        """Members in scope that the database holds as present."""
        return len(self.stored.fingerprints)


async def survey(desired: DesiredState, store: Store, guild_id: int, scope: Scope, *, full_rows: bool) -> Survey:
    """Count the scope on both sides: which members to compare, and which would be marked left.

    Members are compared in user id order when many rows are to be written (an empty database, a
    run that reads every row) so that the writes walk the database's b-trees in key order; in a
    steady state few rows change and the cache's own order spares sorting a million ids.
    """
    token = desired.ready_token(guild_id)
    if token is None:
        raise GuildNotReadyError(guild_id)
    cached = desired.member_ids(guild_id)
    stored = await store.load_fingerprints(guild_id, scope)
    check_ready(desired, guild_id, token)
    in_scope: AbstractSet[int] = cached if scope.user_ids is None else scope.user_ids & cached
    departures = frozenset(uid for uid in stored.fingerprints if uid not in cached)
    if full_rows or scope.user_ids is not None or len(stored.fingerprints) < len(in_scope) // 2:
        candidates: Sequence[int] = sorted(itertools.chain(in_scope, departures))
    else:
        candidates = [*in_scope, *departures]
    return Survey(
        guild_id=guild_id, scope=scope, token=token, candidates=candidates, stored=stored, departures=departures
    )


@attrs.define(kw_only=True)
class PlanProgress:
    """How far a run is: members compared, member writes planned, member writes done."""

    total: int
    compared: int = 0
    planned: int = 0
    written: int = 0

    @property
    def settled(self) -> int:
        """Members compared whose write, if any, is done (the run's progress, in members)."""
        return self.compared - self.planned + self.written


def _with_rows(dirty: frozenset[int], stored: StoredFingerprints) -> frozenset[int]:
    """The dirty members that may have a row: every one, unless the database holds nobody as left.

    Then a member unknown to the fingerprints has no row at all and is created without a read (a
    first sync of a million members is a million such members, each slice of them read for nothing).
    """
    if stored.left != 0:
        return dirty
    present = stored.fingerprints
    return frozenset(uid for uid in dirty if uid in present)


async def plan_slices(
    desired: DesiredState,
    store: Store,
    surveyed: Survey,
    *,
    memo: FingerprintMemo | None = None,
    full_rows: bool = False,
    force: bool = False,
    progress: PlanProgress | None = None,
    remember: list[MemberState] | None = None,
) -> AsyncGenerator[ChangeSet, None]:
    """The run's change sets: the roles first, then one per slice of members, planned when asked for.

    A slice trusts the fingerprints the survey read and loads in full only its members whose
    fingerprint differs; `full_rows` (and `force`) load every row of the slice, which also finds rows
    edited in the database behind the bot's back. Departures are only those the survey counted.
    `remember` collects the compared states (to fill a cold `memo` after the run). Raises
    `GuildNotReadyError` as soon as the guild's member list is reloaded under the run.
    """
    guild_id, scope = surveyed.guild_id, surveyed.scope
    if scope.roles:
        roles = Scope.roles_only()
        wanted = desired.snapshot(guild_id, roles)
        actual = await store.load_snapshot(guild_id, roles)
        check_ready(desired, guild_id, surveyed.token)
        yield plan_changes(wanted, actual)
    candidates = surveyed.candidates
    for start in range(0, len(candidates), SLICE_MEMBERS):
        ids = candidates[start : start + SLICE_MEMBERS]
        part = Scope.of_users(ids)
        wanted = desired.snapshot(guild_id, part)
        if full_rows or force:
            planned = plan_changes(wanted, await store.load_snapshot(guild_id, part), force=force)
        else:
            comparison = compare_fingerprints(wanted, surveyed.stored, memo=memo)
            if remember is not None:
                remember.extend(wanted.members.values())
            dirty = part.narrow(comparison.dirty)
            actual = StoredSnapshot(guild_id=guild_id, members={}, scope=dirty)
            rows = _with_rows(comparison.dirty, surveyed.stored)
            if rows:
                actual = attrs.evolve(await store.load_snapshot(guild_id, part.narrow(rows)), scope=dirty)
            planned = plan_changes(wanted, actual).add_unchanged(comparison.clean)
        check_ready(desired, guild_id, surveyed.token)
        planned = planned.keep_departures(surveyed.departures)
        if progress is not None:
            progress.compared += len(ids)
            progress.planned += planned.member_operations
        yield planned
