"""Scope: how queued requests merge and what a reconcile looks at."""

from __future__ import annotations

import pytest

from reconciler.domain import Scope

ALL = Scope.everything()
ROLES = Scope.roles_only()


def users(*ids: int, roles: bool = False) -> Scope:
    return Scope.of_users(ids, roles=roles)


@pytest.mark.parametrize(
    ("left", "right", "merged"),
    [
        pytest.param(ALL, users(1), ALL, id="all absorbs ids"),
        pytest.param(users(1), ALL, ALL, id="ids absorbed by all"),
        pytest.param(users(1, 2), users(2, 3), users(1, 2, 3), id="ids union"),
        pytest.param(users(1), ROLES, users(1, roles=True), id="roles flag or"),
        pytest.param(ROLES, ROLES, ROLES, id="roles only twice"),
        pytest.param(Scope(user_ids=None, roles=False), ROLES, ALL, id="all members without roles + roles"),
    ],
)
def test_merge(left: Scope, right: Scope, merged: Scope) -> None:
    assert left.merge(right) == merged


@pytest.mark.parametrize(
    ("left", "right", "both"),
    [
        pytest.param(ALL, users(1), users(1), id="all and ids"),
        pytest.param(users(1, 2), users(2, 3, roles=True), users(2), id="ids and ids"),
        pytest.param(ALL, ROLES, ROLES, id="all and roles"),
        pytest.param(ALL, ALL, ALL, id="all and all"),
    ],
)
def test_intersect(left: Scope, right: Scope, both: Scope) -> None:
    assert left.intersect(right) == both


def test_constructors() -> None:
    assert ALL.all_members
    assert ALL.roles
    assert ALL.includes(123)
    assert not ROLES.includes(123)
    assert ROLES.roles
    assert users(1).includes(1)
    assert not users(1).includes(2)
    assert not users(1).roles
    assert Scope.of_users([]).is_empty
    assert not ROLES.is_empty


def test_narrow_keeps_the_roles_flag_and_the_scope_bounds() -> None:
    assert ALL.narrow([1, 2]) == users(1, 2, roles=True)
    assert users(1, 2).narrow([2, 3]) == users(2)


def test_select_picks_entries_in_scope_either_way_round() -> None:
    items = {1: "a", 2: "b", 3: "c"}

    assert dict(ALL.select(items)) == items
    assert dict(users(2, 4).select(items)) == {2: "b"}
    assert dict(users(*range(100)).select(items)) == items
