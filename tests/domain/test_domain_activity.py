"""merge_activity: one delta per member and day, counts added, latest sighting kept."""

from __future__ import annotations

import datetime

from reconciler.domain import ActivityDelta, merge_activity

DAY = datetime.date(2024, 1, 2)
T0 = datetime.datetime(2024, 1, 2, 10, tzinfo=datetime.UTC)


def delta(user_id: int, messages: int, at: datetime.datetime, day: datetime.date = DAY) -> ActivityDelta:
    return ActivityDelta(guild_id=1, user_id=user_id, day=day, messages=messages, last_seen_at=at)


def test_merge_adds_counts_and_keeps_the_latest_time() -> None:
    later = T0 + datetime.timedelta(minutes=5)
    next_day = DAY + datetime.timedelta(days=1)

    merged = merge_activity([delta(1, 2, later), delta(2, 1, T0), delta(1, 3, T0), delta(1, 1, later, day=next_day)])

    assert merged == [delta(1, 5, later), delta(2, 1, T0), delta(1, 1, later, day=next_day)]


def test_merge_of_nothing_is_nothing() -> None:
    assert merge_activity([]) == []
