"""``reconciler check-config`` refuses every kind of bad configuration with one line and exit code 2."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

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
        (
            f'[discord]\ntoken = "{GOOD_TOKEN}"\n[database]\nurl = "postgresql+asyncpg://postgres@127.0.0.1:1/test"\n'
            "connect_timeout_seconds = 3\n",
            "database.url",
        ),
        (
            f'[discord]\ntoken = "{GOOD_TOKEN}"\n[database]\nurl = "sqlite+aiosqlite:////proc/no/such/dir/r.db"\n',
            "database.url",
        ),
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
