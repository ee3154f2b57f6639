"""FailureStreak: a repeating failure logs its start in full, a reminder a period, and its end."""

from __future__ import annotations

import logging

import pytest

from reconciler.observability.failure_streak import FailureStreak


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(streak: FailureStreak, n: int) -> None:
    try:
        raise ConnectionRefusedError(f"attempt {n}")
    except ConnectionRefusedError:
        streak.failed({"step": "write"})


def test_start_in_full_then_one_reminder_per_period_with_the_last_error_then_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    streak = FailureStreak(logging.getLogger("streak.test"), "flush failed", remind_seconds=60, clock=clock)
    caplog.set_level("INFO", logger="streak.test")

    for n in range(1, 31):  # 30 attempts, 5 s apart: 145 s in all
        fail(streak, n)
        clock.now += 5

    records = caplog.records
    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("ERROR", "flush failed"),
        ("WARNING", "flush failed: still failing"),
        ("WARNING", "flush failed: still failing"),
    ]
    assert records[0].exc_info is not None
    assert records[0].step == "write"
    # Reminders at 60 s (attempt 13) and 120 s (attempt 25), each naming the latest error.
    assert [(r.failures, r.seconds) for r in records[1:]] == [(13, 60.0), (25, 120.0)]
    assert records[2].last_error == "ConnectionRefusedError: attempt 25"
    assert streak.failures == 30

    streak.succeeded()
    streak.succeeded()  # no streak any more: nothing to say

    assert [r.getMessage() for r in caplog.records[3:]] == ["flush failed: recovered"]
    assert (caplog.records[3].failures, caplog.records[3].seconds) == (30, 150.0)
    assert streak.failures == 0


def test_a_new_streak_after_recovery_logs_its_start_in_full_again(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    streak = FailureStreak(logging.getLogger("streak.test"), "flush failed", clock=clock)
    caplog.set_level("INFO", logger="streak.test")

    fail(streak, 1)
    streak.succeeded()
    fail(streak, 2)

    assert [(r.levelname, r.exc_info is not None) for r in caplog.records] == [
        ("ERROR", True),
        ("WARNING", False),
        ("ERROR", True),
    ]
