"""The bulk path writes times as the exact text SQLAlchemy's SQLite DateTime writes.

Rows written by both paths are compared as text in SQL (the cleanup's cutoff, `last_seen_at`
against `first_seen_at`): one format, or comparisons go wrong by a character.
"""

from __future__ import annotations

import datetime

import pytest
from sqlalchemy.dialects import sqlite

from reconciler.store.bulk import sqlite_time
from reconciler.store.tables import UtcDateTime

_PLUS_TWO = datetime.timezone(datetime.timedelta(hours=2))
_MINUS_FIVE_THIRTY = datetime.timezone(-datetime.timedelta(hours=5, minutes=30))


def sqlalchemy_text(value: datetime.datetime) -> str:
    dialect = sqlite.dialect()
    column = UtcDateTime()
    bind = column.impl.dialect_impl(dialect).bind_processor(dialect)
    assert bind is not None
    return bind(column.process_bind_param(value, dialect))


@pytest.mark.parametrize(
    "value",
    [
        datetime.datetime(2020, 2, 29, 23, 59, 59, 999999, tzinfo=datetime.UTC),
        datetime.datetime(2020, 2, 29, 23, 59, 59, 999999, tzinfo=_PLUS_TWO),
        datetime.datetime(2021, 1, 1, 0, 0, 0, tzinfo=_MINUS_FIVE_THIRTY),
        datetime.datetime(2015, 5, 13, 7, 8, 9, 5, tzinfo=datetime.timezone(datetime.timedelta(0))),
        datetime.datetime(1, 1, 1, tzinfo=datetime.UTC),
    ],
)
def test_bulk_time_text_is_sqlalchemys(value: datetime.datetime) -> None:
    assert sqlite_time(value) == sqlalchemy_text(value)


def test_no_time_is_null() -> None:
    assert sqlite_time(None) is None
