"""``reconciler check-config`` refuses every kind of bad configuration with one line and exit code 2."""

from __future__ import annotations

import os
import pathlib
import sqlite3
import subprocess
import sys
import typing

import attrs
import pytest

from reconciler.cli import main
from reconciler.failures import FailureKind

GOOD_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.secret-part-of-the-token"


def _run(args: list[str], cwd: pathlib.Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@attrs.frozen
class _Ran:
    returncode: int
    stdout: str
    stderr: str


class Runner(typing.Protocol):
    def __call__(self, args: list[str], cwd: pathlib.Path, env: dict[str, str] | None = None) -> _Ran: ...


@pytest.fixture
def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Runner:
    """`reconciler ARGS` in this process (the subprocess tests above prove the entry point): much faster."""

    def run(args: list[str], cwd: pathlib.Path, env: dict[str, str] | None = None) -> _Ran:
        for name in [k for k in os.environ if k.startswith("RECONCILER_")]:
            monkeypatch.delenv(name)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = main(args)
        out, err = capsys.readouterr()
        return _Ran(code, out, err)

    return run


def _config(tmp_path: pathlib.Path, body: str) -> pathlib.Path:
    path = tmp_path / "config.toml"
    db = tmp_path / "data" / "r.db"
    if "[database]" not in body:
        body += f'\n[database]\nurl = "sqlite+aiosqlite:///{db}"\n'
    path.write_text(body)
    return path


def test_help_lists_subcommands(tmp_path: pathlib.Path) -> None:
    result = _run(["--help"], tmp_path)
    assert result.returncode == 0
    assert "check-config" in result.stdout


def test_good_config_passes(tmp_path: pathlib.Path) -> None:
    path = _config(tmp_path, f'[discord]\ntoken = "{GOOD_TOKEN}"\n')
    result = _run(["--config", str(path), "check-config"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout
    assert GOOD_TOKEN not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (f'[discord]\ntoken = "{GOOD_TOKEN}"\ntokn = "x"\n', "discord.tokn"),
        (f'[discord]\ntoken = "{GOOD_TOKEN}"\n[sync]\nprogress_every = "x"\n', "sync.progress_every"),
        (f'[discord]\ntoken = "{GOOD_TOKEN}"\n[schedule]\ncleanup_cron = "0 3 * *"\n', "schedule.cleanup_cron"),
        ('[discord]\ntoken = ""\n', "discord.token"),
        ('[discord]\ntoken = "abc"\n', "discord.token"),
        (f'[discord]\ntoken = "{GOOD_TOKEN}"\nshard_ids = "[0"\nshard_count = 2\n', "discord.shard_ids"),
    ],
)
def test_bad_config_is_one_line_exit_2(tmp_path: pathlib.Path, body: str, key: str) -> None:
    path = _config(tmp_path, body)
    result = _run(["--config", str(path), "check-config"], tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert key in lines[0]
    assert str(path) in lines[0]
    assert "Traceback" not in result.stderr
    assert GOOD_TOKEN not in result.stderr


def test_environment_override_reaches_check_config(tmp_path: pathlib.Path) -> None:
    path = _config(tmp_path, "")
    result = _run(["--config", str(path), "check-config"], tmp_path, {"RECONCILER_DISCORD__TOKEN": GOOD_TOKEN})
    assert result.returncode == 0, result.stderr


def test_good_config_passes_with_config_after_the_subcommand(run_main: Runner, tmp_path: pathlib.Path) -> None:
    path = _config(tmp_path, f'[discord]\ntoken = "{GOOD_TOKEN}"\n')
    result = run_main(["check-config", "--config", str(path)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"{path}: ok"


def test_check_config_creates_nothing_and_says_what_run_would_create(run_main: Runner, tmp_path: pathlib.Path) -> None:
    path = _config(tmp_path, f'[discord]\ntoken = "{GOOD_TOKEN}"\n')
    before = sorted(tmp_path.rglob("*"))
    result = run_main(["check-config", "--config", str(path)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(tmp_path.rglob("*")) == before
    assert f"run would create the folder {tmp_path / 'data'}" in result.stdout
    assert f"run would create the database file {tmp_path / 'data' / 'r.db'}" in result.stdout


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql+asyncpg://postgres@127.0.0.1:1/test", "cannot connect"),
        ("sqlite+aiosqlite:///{tmp}/a-file/r.db", "is not a folder"),
        ("sqlite+aiosqlite:///{tmp}/a-file", "is not a SQLite database"),
    ],
    ids=["unreachable", "folder-is-a-file", "not-a-database"],
)
def test_unusable_database_is_one_line_exit_6(run_main: Runner, tmp_path: pathlib.Path, url: str, reason: str) -> None:
    (tmp_path / "a-file").write_text("not a database, not a folder")
    path = _config(tmp_path, f'[discord]\ntoken = "{GOOD_TOKEN}"\n[database]\nurl = "{url.format(tmp=tmp_path)}"\n')
    result = run_main(["--config", str(path), "check-config"], tmp_path)
    assert result.returncode == 6, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: database.url: ")
    assert reason in lines[0]


def test_missing_named_config_is_an_error(run_main: Runner, tmp_path: pathlib.Path) -> None:
    env = {"RECONCILER_DISCORD__TOKEN": GOOD_TOKEN}
    by_variable = run_main(["check-config"], tmp_path, {**env, "RECONCILER_CONFIG": "absent.toml"})
    by_option = run_main(["check-config", "--config", "absent.toml"], tmp_path, env)
    assert (by_variable.returncode, by_option.returncode) == (2, 2)
    assert by_variable.stderr.strip() == "config error: absent.toml: file not found (named by RECONCILER_CONFIG)"
    assert by_option.stderr.strip() == "config error: absent.toml: file not found (named by --config)"
    assert by_variable.stdout == by_option.stdout == ""


def test_errors_and_ok_name_the_file_actually_read(run_main: Runner, tmp_path: pathlib.Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text(f'[discord]\ntoken = "{GOOD_TOKEN}"\n[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/r.db"\n')
    good = run_main(["check-config"], tmp_path, {"RECONCILER_CONFIG": str(other)})
    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines()[-1] == f"{other}: ok"
    other.write_text(other.read_text() + "[sync]\nprogress_every = 0\n")
    bad = run_main(["check-config"], tmp_path, {"RECONCILER_CONFIG": str(other)})
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"config error: {other}: sync.progress_every")
    assert "config.toml" not in bad.stderr


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "RECONCILER_DISCORD__INTENTS",
            "GUILDS",
            "RECONCILER_DISCORD__INTENTS: discord.intents: GUILD_MEMBERS is required",
        ),
        ("RECONCILER_DISCORD__SHARD_IDS", "[0", "RECONCILER_DISCORD__SHARD_IDS: discord.shard_ids: not a JSON list"),
        ("RECONCILER_DISCORD__SHARD_IDS", "0,x", "RECONCILER_DISCORD__SHARD_IDS: discord.shard_ids.1"),
        ("RECONCILER_DISCORD", "{oops", "RECONCILER_DISCORD: not valid JSON"),
    ],
)
def test_environment_errors_are_one_line_exit_2(
    run_main: Runner, tmp_path: pathlib.Path, variable: str, value: str, expected: str
) -> None:
    path = _config(tmp_path, f'[discord]\ntoken = "{GOOD_TOKEN}"\n')
    result = run_main(
        ["check-config", "--config", str(path)], tmp_path, {variable: value, "RECONCILER_DISCORD__SHARD_COUNT": "2"}
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"config error: {expected}"), lines[0]


def test_check_config_leaves_an_existing_wal_database_untouched(run_main: Runner, tmp_path: pathlib.Path) -> None:
    path = _config(tmp_path, f'[discord]\ntoken = "{GOOD_TOKEN}"\n')
    (tmp_path / "data").mkdir()
    with sqlite3.connect(tmp_path / "data" / "r.db") as connection:
        connection.execute("PRAGMA journal_mode=wal")
        connection.execute("CREATE TABLE t (x)")
    connection.close()
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    result = run_main(["check-config", "--config", str(path)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
    assert "exists and is writable" in result.stdout


def test_an_unexpected_error_is_one_line_exit_1_without_the_token(
    run_main: Runner, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(args: object) -> int:
        raise RuntimeError(f"something odd about {GOOD_TOKEN}\nsecond line")

    monkeypatch.setattr("reconciler.cli._check_config", broken)
    result = run_main(["check-config"], tmp_path, {"RECONCILER_DISCORD__TOKEN": GOOD_TOKEN})
    assert result.returncode == 1
    assert result.stderr.startswith("error: unexpected RuntimeError: something odd about [token] (the traceback")
    assert len(result.stderr.strip().splitlines()) == 1
    assert GOOD_TOKEN not in result.stderr


def test_every_exit_code_is_in_the_readme_troubleshooting_table() -> None:
    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme.partition("## Troubleshooting")[2].partition("\n## ")[0]
    codes = {
        int(line.split("|")[1])
        for line in table.splitlines()
        if line.startswith("| ") and line.split("|")[1].strip().isdigit()
    }
    assert {int(kind) for kind in FailureKind} <= codes
