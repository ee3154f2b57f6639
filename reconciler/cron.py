"""Crontab lines read as cron reads them, for the scheduler and for config validation alike.

Its own module so that `config` can validate a cron expression with the scheduler's own parser (what
passes validation is exactly what runs) without importing the scheduler.
"""

from __future__ import annotations

__all__ = ["crontab_trigger"]

import typing
import zoneinfo

from apscheduler.triggers.cron import CronTrigger

if typing.TYPE_CHECKING:
    import datetime

_CRON_WEEKDAYS: typing.Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
"""Cron's numbering: 0 (and 7) is Sunday. APScheduler 3's `from_crontab` starts at 0 = Monday."""


def _weekday(token: str) -> int:
    token = token.strip().lower()
    if token.isdigit():
        number = int(token)
        if number > 7:
            msg = f"weekday {token} is not 0-7 (0 and 7 are Sunday)"
            raise ValueError(msg)
        return number
    if token in _CRON_WEEKDAYS:
        return _CRON_WEEKDAYS.index(token)
    msg = f"unknown weekday {token!r}"
    raise ValueError(msg)


def _weekdays_for_apscheduler(field: str) -> str:
    """Cron's day-of-week field, as weekday names APScheduler reads the way cron means them."""
    if field in {"*", "?"}:
        return "*"
    days: set[int] = set()
    for item in field.split(","):
        base, slash, step_text = item.partition("/")
        if slash and not step_text.isdigit():
            msg = f"bad step in weekday {item!r}"
            raise ValueError(msg)
        step = int(step_text) if slash else 1
        if step < 1:
            msg = f"bad step in weekday {item!r}"
            raise ValueError(msg)
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            low, high = base.split("-", 1)
            first, last = _weekday(low), _weekday(high)
        else:
            first = _weekday(base)
            last = 6 if slash else first
        if first > last:
            msg = f"weekday range {base!r} runs backwards"
            raise ValueError(msg)
        days.update(day % 7 for day in range(first, last + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(_CRON_WEEKDAYS[day] for day in sorted(days, key=lambda day: (day - 1) % 7))


def crontab_trigger(expression: str, timezone: str | datetime.tzinfo) -> CronTrigger:
    """A trigger for a standard crontab line (minute hour day month weekday) in `timezone`.

    Unlike APScheduler 3's `CronTrigger.from_crontab`, weekdays are numbered as cron numbers them
    (0 or 7 = Sunday, 1 = Monday). Cron runs a line whose day of month and day of week are both
    restricted when either matches, APScheduler only when both do: such a line is refused rather
    than run on the wrong days. Raises `ValueError` with the reason.
    """
    fields = expression.split()
    if len(fields) != 5:
        msg = f"expected 5 fields (minute hour day month weekday), got {len(fields)}"
        raise ValueError(msg)
    minute, hour, day, month, weekday = fields
    day_of_week = _weekdays_for_apscheduler(weekday)
    if day not in {"*", "?"} and day_of_week != "*":
        msg = "day of month and day of week are both restricted; restrict one (cron would OR them)"
        raise ValueError(msg)
    zone = zoneinfo.ZoneInfo(timezone) if isinstance(timezone, str) else timezone
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week, timezone=zone)
