"""Cron lines fire when cron would fire them (weekdays included), in the configured time zone.

APScheduler 3's own `CronTrigger.from_crontab` counts weekdays from Monday = 0, so "0 3 * * 1" would
run on Tuesdays; these tests pin the day an operator means.
"""

from __future__ import annotations

import datetime
import pathlib
import zoneinfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from reconciler.config import ConfigError, load_settings
from reconciler.cron import crontab_trigger
from reconciler.scheduling import slot_key, slot_time

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
# Saturday 6 January 2024, noon in Paris: the following days are Sun 7, Mon 8, Tue 9, ... Sat 13.
SATURDAY_NOON = datetime.datetime(2024, 1, 6, 12, 0, tzinfo=PARIS)


def _fire_days(expression: str, count: int = 7) -> list[str]:
    trigger = crontab_trigger(expression, "Europe/Paris")
    days: list[str] = []
    fire = trigger.get_next_fire_time(None, SATURDAY_NOON)
    while fire is not None and len(days) < count:
        days.append(fire.strftime("%a %H:%M"))
        fire = trigger.get_next_fire_time(fire, fire + datetime.timedelta(seconds=1))
    return days


def test_monday_cleanup_fires_on_monday_at_three_in_the_configured_zone() -> None:
    trigger = crontab_trigger("0 3 * * 1", "Europe/Paris")
    fire = trigger.get_next_fire_time(None, SATURDAY_NOON)
    assert fire == datetime.datetime(2024, 1, 8, 3, 0, tzinfo=PARIS)
    assert fire.strftime("%A") == "Monday"
    assert fire.astimezone(datetime.UTC).hour == 2  # 03:00 in Paris in winter is 02:00 UTC
    # The trap this avoids: APScheduler's own parser reads the same line as Tuesday.
    naive = CronTrigger.from_crontab("0 3 * * 1", timezone=PARIS)
    assert naive.get_next_fire_time(None, SATURDAY_NOON).strftime("%A") == "Tuesday"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 3 * * 0", ["Sun 03:00", "Sun 03:00"]),
        ("0 3 * * 7", ["Sun 03:00", "Sun 03:00"]),
        ("0 3 * * sun", ["Sun 03:00", "Sun 03:00"]),
        ("0 3 * * 1-5", ["Mon 03:00", "Tue 03:00", "Wed 03:00", "Thu 03:00", "Fri 03:00", "Mon 03:00"]),
        ("0 3 * * 5-7", ["Sun 03:00", "Fri 03:00", "Sat 03:00", "Sun 03:00"]),
        ("0 3 * * */2", ["Sun 03:00", "Tue 03:00", "Thu 03:00", "Sat 03:00", "Sun 03:00"]),
        ("0 3 * * mon,fri", ["Mon 03:00", "Fri 03:00", "Mon 03:00"]),
        ("30 4 * * *", ["Sun 04:30", "Mon 04:30"]),
        ("0 3 * * 0-6", ["Sun 03:00", "Mon 03:00"]),
    ],
)
def test_weekdays_are_numbered_as_in_cron(expression: str, expected: list[str]) -> None:
    assert _fire_days(expression, len(expected)) == expected


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("61 3 * * *", "61"),
        ("0 3 * *", "expected 5 fields"),
        ("0 3 * * 8", "weekday 8"),
        ("0 3 * * 5-2", "runs backwards"),
        ("0 3 * * someday", "unknown weekday"),
        ("0 3 1 * 1", "both restricted"),
    ],
)
def test_bad_lines_are_refused(expression: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        crontab_trigger(expression, "UTC")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[schedule]\ncleanup_cron = '0 3 * * 8'\n", "schedule.cleanup_cron: cron '0 3 * * 8' does not parse"),
        ("[schedule]\nrelist_cron = '0 3 1 * 1'\n", "schedule.relist_cron: cron '0 3 1 * 1' does not parse"),
        (
            "[schedule]\ndrift_check_seconds = 10\ndrift_check_jitter_seconds = 10\n",
            "schedule: drift_check_jitter_seconds must be shorter than drift_check_seconds",
        ),
        (
            "[schedule]\ncount_audit_seconds = 20\ncount_audit_jitter_seconds = 30\n",
            "schedule: count_audit_jitter_seconds must be shorter than count_audit_seconds",
        ),
        ("[schedule]\ncount_audit_seconds = 0\n", "schedule.count_audit_seconds"),
    ],
)
def test_a_bad_schedule_stops_start_up(tmp_path: pathlib.Path, body: str, expected: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert expected in str(caught.value)


def test_a_fire_is_named_after_its_scheduled_time_whatever_its_delay() -> None:
    trigger = crontab_trigger("0 3 * * 1", "Europe/Paris")
    scheduled = datetime.datetime(2024, 1, 8, 3, 0, tzinfo=PARIS)
    grace = datetime.timedelta(seconds=301)
    for delay in (0.0, 0.4, 12.0, 299.0):
        now = scheduled + datetime.timedelta(seconds=delay)
        assert slot_time(trigger, now, lookback=grace) == scheduled
    # Before the fire, or after the grace time, there is no slot to claim.
    assert slot_time(trigger, scheduled - datetime.timedelta(seconds=1), lookback=grace) is None
    assert slot_time(trigger, scheduled + datetime.timedelta(seconds=400), lookback=grace) is None
    assert slot_key(scheduled, 42) == "2024-01-08T02:00:00.000Z/42"
