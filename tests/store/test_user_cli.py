"""`reconciler user export|forget`: JSON out, erasure on request, one-line errors with exit code 2."""

from __future__ import annotations

import asyncio
import datetime
import json
import pathlib

import pytest

from reconciler.cli import main
from reconciler.domain import GuildSnapshot, MemberState, Scope, plan_changes
from reconciler.store import SqlStore

GUILD = 555
JOINED = datetime.datetime(2022, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


async def _filled(url: str) -> None:
    store = await SqlStore.open(url)
    try:
        await store.upgrade()
        desired = GuildSnapshot(
            guild_id=GUILD,
            members={
                7: MemberState(user_id=7, username="seven", global_name="Seven", nickname="sev", joined_at=JOINED),
                8: MemberState(user_id=8, username="eight", joined_at=JOINED),
            },
        )
        await store.apply(GUILD, plan_changes(desired, await store.load_snapshot(GUILD, Scope.everything())))
    finally:
        await store.close()


@pytest.fixture
def url(tmp_path: pathlib.Path) -> str:
    address = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    asyncio.run(_filled(address))
    return address


def test_export_then_forget_then_export(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["user", "export", "7", "--database", url]) == 0
    before = json.loads(capsys.readouterr().out)
    assert before["user_id"] == 7
    assert before["tables"]["users"][0]["username"] == "seven"
    assert before["tables"]["members"][0]["nickname"] == "sev"
    assert set(before["tables"]) == {
        "users",
        "members",
        "member_roles",
        "message_activity",
        "member_events",
        "forgotten_users",
        "sync_runs",
    }

    assert main(["user", "forget", "7", "--database", url]) == 0
    assert "user 7 forgotten" in capsys.readouterr().out
    assert main(["user", "export", "7", "--database", url]) == 0
    after = capsys.readouterr().out

    for personal in ("seven", "Seven", "sev"):
        assert personal not in after
    assert json.loads(after)["tables"]["forgotten_users"][0]["user_id"] == 7
    assert main(["user", "export", "8", "--database", url]) == 0
    assert "eight" in capsys.readouterr().out, "another user is untouched"


@pytest.mark.parametrize("action", ["export", "forget"])
@pytest.mark.parametrize(
    "given", ["abc", "-7", "0", "7.0", "99999999999999999999", "\u0667"]
)  # an Arabic-Indic seven: a digit, not ASCII
def test_an_id_that_is_not_a_snowflake_is_refused_in_one_line(
    url: str, capsys: pytest.CaptureFixture[str], action: str, given: str
) -> None:
    code = main(["user", action, given, "--database", url])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert "is not a Discord user id" in captured.err


@pytest.mark.parametrize("action", ["export", "forget"])
def test_an_unknown_user_is_refused_and_nothing_changes(
    url: str, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    code = main(["user", action, "123456789", "--database", url])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.strip() == (f"user {action}: unknown user 123456789: no table holds anything about this id")
    assert main(["user", "export", "7", "--database", url]) == 0
    assert json.loads(capsys.readouterr().out)["tables"]["forgotten_users"] == []


def test_a_database_without_the_schema_is_reported_in_one_line(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"

    code = main(["user", "forget", "7", "--database", empty])

    captured = capsys.readouterr()
    assert code == 1
    assert len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith("user forget: database error, nothing was changed:")
    assert "no such table" in captured.err
