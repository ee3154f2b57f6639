"""Which history events a change writes, decided from plain values (a table of inputs and outputs)."""

from __future__ import annotations

import datetime

import attrs
import pytest

from reconciler.domain import (
    EventKind,
    GuildSnapshot,
    MemberEvent,
    MemberState,
    StoredMember,
    StoredSnapshot,
    change_events,
    created_events,
    plan_changes,
    redact,
)
from reconciler.domain.history import event_text
from reconciler.domain.state import MemberStatus

GUILD = 1
BASE = MemberState(user_id=7, username="u", global_name="U", avatar_hash="h", nickname="n", role_ids=frozenset({1}))
AT = datetime.datetime(2024, 3, 1, 12, 0, tzinfo=datetime.UTC)


def events_of(
    before: MemberState, after: MemberState, *, status: MemberStatus = MemberStatus.ACTIVE
) -> list[MemberEvent]:
    changes = plan_changes(
        GuildSnapshot(guild_id=GUILD, members={after.user_id: after}),
        StoredSnapshot(guild_id=GUILD, members={before.user_id: StoredMember(state=before, status=status)}),
    )
    (change,) = (*changes.members_to_update, *changes.members_to_rejoin)
    return change_events(change, rejoined=status is MemberStatus.LEFT)


def e(kind: EventKind, old: str | None = None, new: str | None = None, role: int | None = None) -> MemberEvent:
    return MemberEvent(user_id=7, kind=kind, old_value=old, new_value=new, role_id=role)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"nickname": "m"}, [e(EventKind.NICKNAME_CHANGED, "n", "m")]),
        ({"nickname": None}, [e(EventKind.NICKNAME_CHANGED, "n", None)]),
        ({"username": "v"}, [e(EventKind.USERNAME_CHANGED, "u", "v")]),
        ({"global_name": None}, [e(EventKind.GLOBAL_NAME_CHANGED, "U", None)]),
        ({"avatar_hash": "other"}, []),  # the user's avatar is stored, not part of the history
        ({"role_ids": frozenset({1, 2})}, [e(EventKind.ROLE_ADDED, role=2)]),
        ({"role_ids": frozenset()}, [e(EventKind.ROLE_REMOVED, role=1)]),
        ({"premium_since": AT}, [e(EventKind.PREMIUM_SINCE_CHANGED, None, "2024-03-01T12:00:00+00:00")]),
        ({"communication_disabled_until": AT}, [e(EventKind.TIMEOUT_CHANGED, None, "2024-03-01T12:00:00+00:00")]),
        ({"pending": True}, [e(EventKind.PENDING_CHANGED, "false", "true")]),
        ({"flags": 3}, [e(EventKind.FLAGS_CHANGED, "0", "3")]),
        ({"guild_avatar_hash": "g"}, [e(EventKind.GUILD_AVATAR_CHANGED, None, "g")]),
        (
            {"nickname": "m", "role_ids": frozenset({2})},
            [
                e(EventKind.NICKNAME_CHANGED, "n", "m"),
                e(EventKind.ROLE_REMOVED, role=1),
                e(EventKind.ROLE_ADDED, role=2),
            ],
        ),
    ],
)
def test_an_update_writes_one_event_per_changed_field(change: dict[str, object], expected: list[MemberEvent]) -> None:
    assert events_of(BASE, attrs.evolve(BASE, **change)) == expected


def test_a_rejoin_restarts_every_role_it_holds_and_records_what_changed_while_away() -> None:
    after = attrs.evolve(BASE, nickname="back", role_ids=frozenset({1, 3}))

    assert events_of(BASE, after, status=MemberStatus.LEFT) == [
        e(EventKind.REJOINED),
        e(EventKind.NICKNAME_CHANGED, "n", "back"),
        e(EventKind.ROLE_ADDED, role=1),
        e(EventKind.ROLE_ADDED, role=3),
    ]


def test_a_join_after_the_baseline_starts_the_roles_it_comes_with() -> None:
    assert created_events(attrs.evolve(BASE, role_ids=frozenset({4, 2}))) == [
        e(EventKind.JOINED),
        e(EventKind.ROLE_ADDED, role=2),
        e(EventKind.ROLE_ADDED, role=4),
    ]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        ("x", "x"),
        (
            datetime.datetime(2024, 3, 1, 14, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
            "2024-03-01T12:00:00+00:00",
        ),
    ],
)
def test_values_are_stored_as_text(value: object, text: str | None) -> None:
    assert event_text(value) == text


def test_redact_drops_names_and_avatars_and_keeps_the_rest() -> None:
    full = attrs.evolve(BASE, guild_avatar_hash="g", premium_since=AT, flags=2)

    assert redact(full) == attrs.evolve(
        full, username="", global_name=None, avatar_hash=None, nickname=None, guild_avatar_hash=None
    )
    assert redact(redact(full)) == redact(full)
