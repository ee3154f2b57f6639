"""Fingerprints: stable values, sensitive to every synced field, and the dirty-member split."""

from __future__ import annotations

import datetime

import attrs
import pytest

from reconciler.domain import (
    FingerprintMemo,
    GuildSnapshot,
    MemberState,
    Scope,
    StoredFingerprints,
    compare_fingerprints,
    dirty_user_ids,
    fingerprint,
    fingerprint_members,
)

BASE = MemberState(
    user_id=81384788765712384,
    username="alice",
    global_name="Alice",
    avatar_hash="a_1269e74af4df7417b13759eae50c83dc",
    is_bot=False,
    nickname="ally",
    joined_at=datetime.datetime(2016, 5, 17, 12, 34, 56, 789000, tzinfo=datetime.UTC),
    role_ids=frozenset({175928847299117063, 175928847299117064}),
)


def test_value_is_fixed_across_processes_and_versions() -> None:
    # A stored fingerprint must mean the same thing tomorrow: a changed value here is a migration.
    assert fingerprint(BASE) == -660676926540527446


def test_value_is_a_signed_64_bit_integer() -> None:
    values = [fingerprint(attrs.evolve(BASE, username=f"u{i}")) for i in range(200)]

    assert all(-(2**63) <= v < 2**63 for v in values)
    assert any(v < 0 for v in values)
    assert len(set(values)) == 200


@pytest.mark.parametrize(
    "change",
    [
        {"username": "alicia"},
        {"global_name": None},
        {"global_name": ""},
        {"avatar_hash": None},
        {"is_bot": True},
        {"nickname": None},
        {"nickname": "ally "},
        {"joined_at": None},
        {"joined_at": datetime.datetime(2016, 5, 17, 12, 34, 56, 789001, tzinfo=datetime.UTC)},
        {"role_ids": frozenset({175928847299117063})},
        {"role_ids": frozenset()},
    ],
)
def test_every_synced_field_changes_it(change: dict[str, object]) -> None:
    assert fingerprint(attrs.evolve(BASE, **change)) != fingerprint(BASE)


def test_field_boundaries_are_not_ambiguous() -> None:
    a = attrs.evolve(BASE, username="ab", global_name="c")
    b = attrs.evolve(BASE, username="a", global_name="bc")
    none_vs_empty = (attrs.evolve(BASE, nickname=None), attrs.evolve(BASE, nickname=""))

    assert fingerprint(a) != fingerprint(b)
    assert fingerprint(none_vs_empty[0]) != fingerprint(none_vs_empty[1])


def test_equal_states_have_equal_fingerprints() -> None:
    assert BASE.joined_at is not None
    other_zone = BASE.joined_at.astimezone(datetime.timezone(datetime.timedelta(hours=5)))
    same = attrs.evolve(BASE, joined_at=other_zone, role_ids=frozenset(sorted(BASE.role_ids, reverse=True)))

    assert same == BASE
    assert fingerprint(same) == fingerprint(BASE)


def test_odd_unicode_is_fingerprinted() -> None:
    odd = attrs.evolve(BASE, nickname="\ud800 lone surrogate \x00 nul ﷽" * 50)

    assert fingerprint(odd) != fingerprint(BASE)


def snapshot(*members: MemberState, scope: Scope | None = None) -> GuildSnapshot:
    return GuildSnapshot(guild_id=1, members={m.user_id: m for m in members}, scope=scope or Scope.everything())


def member(user_id: int, nickname: str | None = None) -> MemberState:
    return MemberState(user_id=user_id, username=f"u{user_id}", nickname=nickname)


def test_compare_splits_clean_from_dirty() -> None:
    discord = snapshot(member(1), member(2, "new"), member(3))
    stored = StoredFingerprints(
        guild_id=1,
        # 1 equal, 2 changed, 3 new (or left), 4 present in the database only
        fingerprints={1: fingerprint(member(1)), 2: fingerprint(member(2)), 4: fingerprint(member(4))},
    )

    result = compare_fingerprints(discord, stored)

    assert result.dirty == {2, 3, 4}
    assert result.clean == 1
    assert dirty_user_ids(discord, stored) == {2, 3, 4}


def test_compare_stays_inside_the_scope() -> None:
    scope = Scope.of_users({1, 4})
    discord = snapshot(member(1, "changed"), member(2, "changed"), scope=scope)
    stored = StoredFingerprints(
        guild_id=1,
        fingerprints={1: fingerprint(member(1)), 2: fingerprint(member(2)), 4: 1, 5: 1},
        scope=Scope.everything(),
    )

    assert compare_fingerprints(discord, stored).dirty == {1, 4}


def test_compare_with_nothing_changed_is_all_clean() -> None:
    members = [member(i) for i in range(50)]
    stored = StoredFingerprints(guild_id=1, fingerprints={m.user_id: fingerprint(m) for m in members})

    result = compare_fingerprints(snapshot(*members), stored)

    assert result.dirty == frozenset()
    assert result.clean == 50


def _fresh(states: list[MemberState]) -> GuildSnapshot:
    # New objects with equal states, as each run reads them from the cache: nothing memoized on them.
    return GuildSnapshot(guild_id=1, members={m.user_id: attrs.evolve(m) for m in states})


def test_fingerprinting_ahead_gives_the_comparison_the_same_answer() -> None:
    states = [attrs.evolve(BASE, user_id=BASE.user_id + i, nickname=f"n{i}") for i in range(50)]
    stored = StoredFingerprints(
        guild_id=1, fingerprints={m.user_id: fingerprint(m) + (i % 5 == 0) for i, m in enumerate(states)}
    )
    expected = compare_fingerprints(_fresh(states), stored)

    ahead = _fresh(states)
    fingerprint_members(ahead)

    assert all(m._fingerprint is not None for m in ahead.members.values())  # pyright: ignore[reportPrivateUsage]
    assert compare_fingerprints(ahead, stored) == expected
    assert len(expected.dirty) == 10


def test_fingerprinting_ahead_uses_and_fills_the_memo_and_stops_when_asked() -> None:
    states = [attrs.evolve(BASE, user_id=BASE.user_id + i) for i in range(10_000)]
    memo = FingerprintMemo()

    fingerprint_members(_fresh(states), memo=memo)
    assert len(memo) == len(states)

    later = _fresh(states)
    memo.clear()
    memo.remember(attrs.evolve(m) for m in states)  # nothing memoized on these: nothing to add
    assert len(memo) == 0
    fingerprint_members(later)
    memo.remember(later.members.values())
    assert len(memo) == len(states)

    stopped = _fresh(states)
    fingerprint_members(stopped, stop=lambda: True)
    assert all(m._fingerprint is None for m in stopped.members.values())  # pyright: ignore[reportPrivateUsage]
