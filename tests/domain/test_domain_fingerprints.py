"""Fingerprints: stable values, sensitive to every synced field, and the dirty-member split."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys

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
)

_BASE_FIELDS = {
    "user_id": 81384788765712384,
    "username": "alice",
    "global_name": "Alice",
    "avatar_hash": "a_1269e74af4df7417b13759eae50c83dc",
    "is_bot": False,
    "nickname": "ally",
}
BASE = MemberState(
    **_BASE_FIELDS,  # pyright: ignore[reportArgumentType]
    joined_at=datetime.datetime(2016, 5, 17, 12, 34, 56, 789000, tzinfo=datetime.UTC),
    role_ids=frozenset({175928847299117063, 175928847299117064}),
)


def test_value_is_fixed_across_processes_and_versions() -> None:
    # A stored fingerprint must mean the same thing tomorrow: a changed value here is a migration
    # (version 3 added the member fields admins ask about; `FINGERPRINT_VERSION` says so).
    assert fingerprint(BASE) == 215854666017974776


@pytest.mark.parametrize("seed", ["0", "1", "4242"])
def test_value_does_not_depend_on_the_process_hash_seed(seed: str) -> None:
    # Role ids enter through hash() of their frozenset: integers hash without the per-process salt
    # that text gets. Another interpreter with another seed must agree.
    code = (
        "import datetime; from reconciler.domain import MemberState, fingerprint; "
        f"print(fingerprint(MemberState(**{_BASE_FIELDS!r}, joined_at=datetime.datetime(2016, 5, 17, 12, 34, 56, "
        "789000, tzinfo=datetime.UTC), role_ids=frozenset({175928847299117063, 175928847299117064}))))"
    )
    env = {**os.environ, "PYTHONHASHSEED": seed}
    output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(output.stdout) == fingerprint(BASE)


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
        {"premium_since": datetime.datetime(2024, 3, 1, tzinfo=datetime.UTC)},
        {"communication_disabled_until": datetime.datetime(2024, 3, 1, tzinfo=datetime.UTC)},
        {"pending": True},
        {"flags": 1},
        {"flags": 2},
        {"guild_avatar_hash": "a_00"},
        {"guild_avatar_hash": ""},
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
    scope = Scope.of_users({1, 3, 4})
    discord = snapshot(member(1, "changed"), member(3), scope=scope)
    stored = StoredFingerprints(
        guild_id=1,
        fingerprints={1: fingerprint(member(1)), 2: 1, 3: fingerprint(member(3)), 4: 1, 5: 1},
        scope=Scope.everything(),
    )

    comparison = compare_fingerprints(discord, stored)

    assert comparison.dirty == {1, 4}  # 4 is gone from Discord; 2 and 5 are not in scope
    assert comparison.clean == 1


def test_compare_inside_a_stored_scope_ignores_members_outside_it() -> None:
    discord = snapshot(member(1, "changed"), member(2, "changed"))
    stored = StoredFingerprints(
        guild_id=1, fingerprints={1: fingerprint(member(1)), 4: 1}, scope=Scope.of_users({1, 4})
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


def test_a_memo_filled_after_a_comparison_serves_the_next_one() -> None:
    states = [attrs.evolve(BASE, user_id=BASE.user_id + i, nickname=f"n{i}") for i in range(1000)]
    stored = StoredFingerprints(guild_id=1, fingerprints={m.user_id: fingerprint(m) for m in states})
    memo = FingerprintMemo()

    memo.remember(attrs.evolve(m) for m in states)  # nothing known about these states yet
    assert len(memo) == 0

    first = _fresh(states)
    assert compare_fingerprints(first, stored).clean == len(states)
    memo.remember(first.members.values())
    assert len(memo) == len(states)

    renamed = [attrs.evolve(m, nickname="renamed") if i % 100 == 0 else m for i, m in enumerate(states)]
    comparison = compare_fingerprints(_fresh(renamed), stored, memo=memo)
    assert comparison.dirty == {m.user_id for i, m in enumerate(states) if i % 100 == 0}
    assert comparison.clean == len(states) - 10
