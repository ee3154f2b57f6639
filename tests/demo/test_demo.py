"""`reconciler demo` as a newcomer runs it: a subprocess that must end with exit 0 and a database equal to the server."""

from __future__ import annotations

import io
import os
import pathlib
import re
import sqlite3
import subprocess
import sys

import pytest

from reconciler.demo.terminal import MAX_COLUMNS, Terminal

_SUMMARY_LINE = re.compile(r"^  (?P<label>[A-Z][A-Za-z ]+):\s+(?P<value>.+)$")
# A count of 1,000 or more written without separators: not part of an id, a time, a path, a URL or a version.
_BARE_THOUSANDS = re.compile(r"(?<![\d.,#:/=\w-])\d{4,7}(?![\d.,:/\w-])")
_ONE_PLURAL = re.compile(
    r"(?<![\d.,])\b1 (members|roles|role links|channels|nicknames|messages|chunks|role changes|nicks|msgs)\b"
)


def _summary(stdout: str) -> dict[str, str]:
    """The `label: value` lines after the summary heading."""
    _, heading, block = stdout.partition("══ Summary")
    assert heading, f"no summary in the output:\n{stdout}"
    rows: dict[str, str] = {}
    for line in block.splitlines()[1:]:
        match = _SUMMARY_LINE.match(line)
        if match:
            rows[match["label"]] = match["value"].strip()
    return rows


def _number(text: str) -> int:
    found = re.match(r"[\d,]+", text)
    assert found, f"no number at the start of {text!r}"
    return int(found.group().replace(",", ""))


@pytest.mark.e2e
def test_demo_ends_with_the_database_equal_to_the_server(tmp_path: pathlib.Path) -> None:
    database = tmp_path / "demo.db"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "demo",
            "--members",
            "1500",
            "--duration",
            "15",
            "--database",
            f"sqlite+aiosqlite:///{database}",
            "--metrics-address",
            "127.0.0.1:0",
        ],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-5000:]}"
    assert result.returncode == 0, output

    summary = _summary(result.stdout)
    on_server = _number(summary["Members on the server"])
    in_database = _number(summary["Members in the database"])
    assert on_server >= 1350, output  # 1,500 generated, then people join and leave
    assert in_database == on_server, output
    assert summary["Coverage"] == "100.00%", output
    assert _number(summary["Drift"]) == 0, output
    assert summary["Result"].startswith("PASS"), output
    posted, counted = (int(n.replace(",", "")) for n in re.findall(r"[\d,]+", summary["Messages"])[:2])
    assert posted > 0
    assert counted == posted, output

    # Every step ran, in the order a person reads them.
    headings = [line for line in result.stdout.splitlines() if line.startswith("── ")]
    assert len(headings) >= 5, output
    assert "Replica health: healthy" in result.stdout, output  # /sync stats, the bot's own reply
    assert "Sync users: success" in result.stdout, output

    # The file holds what the sandbox holds, read without the bot.
    with sqlite3.connect(database) as conn:
        present = conn.execute("SELECT COUNT(*) FROM members WHERE status IN ('active', 'inactive')").fetchone()[0]
        left = conn.execute("SELECT COUNT(*) FROM members WHERE status = 'left'").fetchone()[0]
        messages = conn.execute("SELECT COALESCE(SUM(messages), 0) FROM message_activity").fetchone()[0]
        drift_found = conn.execute(
            "SELECT COUNT(*) FROM sync_runs WHERE kind = 'drift_check' AND outcome = 'success'"
            " AND created > 0 AND updated > 0"
        ).fetchone()[0]
        relists = conn.execute(
            "SELECT COUNT(*) FROM sync_runs WHERE kind = 'relist' AND outcome = 'success'"
        ).fetchone()[0]
    assert present == on_server
    assert left > 0
    assert f"{left:,} left" in summary["Members in the database"]
    assert messages == posted
    assert drift_found >= 1, "the scheduled drift check never reported the tampering"
    assert relists >= 1, "the relist never ran"
    assert (tmp_path / "demo.log").exists()

    # Tidy: no raw log line in the show, no line over 100 columns, separators in counts, "1 role" not "1 roles".
    assert result.stderr == "", output  # the bot's warnings go to its log file; only errors would show here
    lines = [line for chunk in result.stdout.splitlines() for line in chunk.split("\r")]
    assert [line for line in lines if len(line) > 100] == [], output
    assert [line for line in lines if _BARE_THOUSANDS.search(line)] == [], output
    assert [line for line in lines if _ONE_PLURAL.search(line)] == [], output
    assert "1 role renamed" in result.stdout, output  # the tampering renames one role: the singular is exercised
    assert re.search(r"\b1 role\b(?! renamed)", result.stdout), output  # ... and its drift reads "1 role"


def test_a_path_too_long_for_the_summary_column_moves_below_its_label_unbroken() -> None:
    deep = "/srv/" + "/".join(f"folder-{n:02}" for n in range(8)) + "/demo.db"  # 92 columns, no space
    out = io.StringIO()
    Terminal(out, interactive=False).table([("Database", deep), ("Coverage", "100.00%")], width=30)

    lines = out.getvalue().splitlines()
    assert lines == ["  Database:", f"    {deep}", f"  {'Coverage:':<30} 100.00%"]
    assert max(map(len, lines)) <= MAX_COLUMNS
