"""compare_counts: Discord's member and role counts against the replica's, as a table of cases."""

from __future__ import annotations

import pytest

from reconciler.domain.counts import COUNT_MISMATCH_KINDS, CountMismatch, GuildCounts, compare_counts


def counts(members: int, **roles: int) -> GuildCounts:
    return GuildCounts(members=members, role_members={int(role[1:]): n for role, n in roles.items()})


@pytest.mark.parametrize(
    ("discord", "replica", "by_kind", "roles"),
    [
        pytest.param(counts(10, r1=3, r2=0), counts(10, r1=3), (0, 0, 0), {}, id="equal; an empty role is absent"),
        pytest.param(counts(10, r1=3), counts(11, r1=3), (1, 0, 0), {}, id="a departure missed"),
        pytest.param(counts(12), counts(10), (2, 0, 0), {}, id="two joins missed"),
        pytest.param(counts(10, r1=4, r2=1), counts(10, r1=3, r2=2), (0, 2, 2), {1: (4, 3), 2: (1, 2)}, id="swap"),
        pytest.param(counts(10, r7=2), counts(10), (0, 1, 2), {7: (2, 0)}, id="a role the replica lacks"),
        pytest.param(counts(10), counts(10, r7=5), (0, 1, 5), {7: (0, 5)}, id="a role deleted on Discord"),
        pytest.param(counts(9, r1=1), counts(10, r1=2), (1, 1, 1), {1: (1, 2)}, id="a holder left unseen"),
    ],
)
def test_compare_counts(
    discord: GuildCounts, replica: GuildCounts, by_kind: tuple[int, int, int], roles: dict[int, tuple[int, int]]
) -> None:
    mismatch = compare_counts(discord, replica)

    assert tuple(mismatch.by_kind().values()) == by_kind
    assert tuple(mismatch.by_kind()) == COUNT_MISMATCH_KINDS
    assert dict(mismatch.roles) == roles
    assert mismatch.total == by_kind[0] + by_kind[2]


def test_equal_counts_describe_themselves_as_matching() -> None:
    assert compare_counts(counts(5, r1=1), counts(5, r1=1)).describe() == "counts match"


def test_a_mismatch_names_the_numbers_and_the_worst_roles_first() -> None:
    mismatch = CountMismatch(
        discord_members=1200, replica_members=1201, roles={1: (5, 4), 2: (10, 0), 3: (7, 9), 4: (1, 0)}
    )

    assert mismatch.describe(roles_shown=2) == (
        "members: Discord 1,200, replica 1,201; 4 role(s) differ (2 10 vs 0, 3 7 vs 9, +2 more)"
    )
