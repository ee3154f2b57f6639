"""The soak benchmark in short: one minute, 5,000 members, faults of every kind, every target met."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time
import typing

import pytest

ROOT: typing.Final = pathlib.Path(__file__).resolve().parents[2]
FAULT_KINDS: typing.Final = {
    "database_outage",
    "invalid_session",
    "reconnect",
    "rate_limited",
    "events_dropped",
    "kill_9",
}
BUDGET_S: typing.Final = 90.0


@pytest.mark.slow
def test_a_one_minute_soak_meets_every_target(tmp_path: pathlib.Path) -> None:
    figures_path = tmp_path / "soak.json"
    started = time.monotonic()
    # A child process, as an operator runs it: the soak owns its event loop, its sandbox and the bot's process.
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "soak.py"),
            "--minutes",
            "1",
            "--members",
            "5000",
            "--seed",
            "11",
            "--json",
            str(figures_path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=BUDGET_S + 60,
        check=False,
    )
    elapsed = time.monotonic() - started
    print(result.stdout[-4000:])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    figures = json.loads(figures_path.read_text(encoding="utf-8"))

    cycles = figures["cycles"]
    assert {c["fault"] for c in cycles if c["fault"]} == FAULT_KINDS, [c["fault"] for c in cycles]
    assert all(c["check"] == "exact" for c in cycles), cycles
    assert all(c["converged_after"] is not None and c["converged_after"] <= c["bound"] for c in cycles), cycles
    assert figures["rss"]["restarts"] >= 1, "no kill -9 and restart"
    assert figures["messages"]["posted"] > 0
    assert figures["rows"], "bookkeeping rows were never sampled"
    judged = {t["name"]: t["met"] for t in figures["targets"]}
    assert False not in judged.values(), figures["targets"]
    assert judged["every quiescent check exact"] is True
    assert judged["no unexpected error in the bot's log"] is True
    assert elapsed < BUDGET_S, f"the short soak took {elapsed:.0f} s"
