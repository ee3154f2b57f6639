"""Merging requests: what every trigger asked survives, the most deliberate trigger leads."""

from __future__ import annotations

import pytest

from reconciler.domain import EventOrigin, EventSource, Scope
from reconciler.engine.runs import RunKind, SyncRequest, Trigger, event_origin, merge_requests


def _gateway(*user_ids: int, left: bool = False, at: float = 1.0) -> SyncRequest:
    return SyncRequest(
        guild_id=7,
        scope=Scope.of_users(user_ids),
        trigger=Trigger.GATEWAY,
        confirmed_departures=frozenset(user_ids) if left else frozenset(),
        event_times=(at,),
    )


def test_burst_of_gateway_requests_unites_scopes_departures_and_event_times() -> None:
    merged = merge_requests([_gateway(1, at=1.0), _gateway(2, left=True, at=2.0), _gateway(1, 3, at=3.0)])
    assert merged.scope == Scope.of_users([1, 2, 3])
    assert merged.confirmed_departures == {2}
    assert merged.event_times == (1.0, 2.0, 3.0)
    assert merged.trigger is Trigger.GATEWAY


def test_command_leads_a_merge_and_everything_scope_wins() -> None:
    command = SyncRequest(
        guild_id=7,
        scope=Scope.everything(),
        trigger=Trigger.COMMAND,
        kind=RunKind.FULL,
        requested_by=99,
        verify=True,
        allow_departures=True,
        cleanup_days=30,
    )
    cleanup = SyncRequest(
        guild_id=7, scope=Scope.everything(), trigger=Trigger.SCHEDULE, kind=RunKind.CLEANUP, cleanup_days=10
    )
    merged = merge_requests([_gateway(1), command, cleanup, _gateway(2, left=True)])
    assert (merged.trigger, merged.kind, merged.requested_by) == (Trigger.COMMAND, RunKind.FULL, 99)
    assert merged.scope.all_members
    assert merged.scope.roles
    assert (merged.verify, merged.allow_departures, merged.force) == (True, True, False)
    assert merged.cleanup_days == 10
    assert merged.confirmed_departures == {2}


def test_pairwise_merge_equals_merging_all_at_once() -> None:
    a, b, c = (
        _gateway(1),
        _gateway(2, left=True),
        SyncRequest(guild_id=7, scope=Scope.roles_only(), trigger=Trigger.GATEWAY, kind=RunKind.ROLES),
    )
    assert a.merge(b).merge(c) == merge_requests([a, b, c])


def test_requests_of_different_guilds_do_not_merge() -> None:
    other = SyncRequest(guild_id=8, scope=Scope.everything(), trigger=Trigger.STARTUP)
    with pytest.raises(ValueError, match="cannot merge"):
        merge_requests([_gateway(1), other])


@pytest.mark.parametrize(
    ("trigger", "kind", "source"),
    [
        (Trigger.GATEWAY, RunKind.USERS, EventSource.GATEWAY),
        (Trigger.GATEWAY, RunKind.ROLES, EventSource.GATEWAY),
        (Trigger.SCHEDULE, RunKind.CLEANUP, EventSource.REPAIR),
        (Trigger.SCHEDULE, RunKind.USERS, EventSource.REPAIR),
        (Trigger.COMMAND, RunKind.FULL, EventSource.REPAIR),
        (Trigger.STARTUP, RunKind.FULL, EventSource.REPAIR),
        (Trigger.SCHEDULE, RunKind.RELIST, EventSource.RELIST),
    ],
)
def test_a_runs_history_source_follows_its_trigger_and_kind(
    trigger: Trigger, kind: RunKind, source: EventSource
) -> None:
    request = SyncRequest(guild_id=1, scope=Scope.everything(), trigger=trigger, kind=kind)

    assert event_origin(request, 42) == EventOrigin(source=source, run_id=42)
