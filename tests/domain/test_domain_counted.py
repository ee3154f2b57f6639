"""CountedIds: the per-channel set of counted message ids (watermark + ranges), and its gaps."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.domain import CountedIds, IdGap, snowflake_at, snowflake_time
from reconciler.domain.counted import format_ranges, parse_ranges


@pytest.mark.parametrize(
    ("watermark", "added", "expected_watermark", "expected_ranges"),
    [
        (0, [], 0, ()),
        (10, [(20, 25)], 10, ((20, 25),)),
        (10, [(20, 25), (26, 30)], 10, ((20, 30),)),  # adjacent ranges join
        (10, [(20, 25), (22, 40)], 10, ((20, 40),)),  # overlapping ranges join
        (10, [(30, 40), (20, 25)], 10, ((20, 25), (30, 40))),  # kept sorted
        (10, [(30, 40), (20, 25), (26, 29)], 10, ((20, 40),)),  # a range bridging two
        (10, [(11, 15)], 15, ()),  # a range touching the watermark raises it
        (10, [(5, 15), (17, 20)], 15, ((17, 20),)),
        (10, [(3, 8)], 10, ()),  # below the watermark: already settled
        (10, [(30, 40), (50, 60), (11, 55)], 60, ()),
    ],
)
def test_add(
    watermark: int,
    added: list[tuple[int, int]],
    expected_watermark: int,
    expected_ranges: tuple[tuple[int, int], ...],
) -> None:
    counted = CountedIds(watermark)
    for first, last in added:
        counted.add(first, last)
    assert (counted.watermark, counted.ranges) == (expected_watermark, expected_ranges)


@pytest.mark.parametrize(
    ("ranges", "up_to", "expected"),
    [
        ((), None, []),
        ((), 100, [IdGap(after=10, before=None)]),
        ((), 10, []),  # the latest message is counted
        (((20, 30),), None, [IdGap(after=10, before=20)]),
        (((20, 30),), 30, [IdGap(after=10, before=20)]),
        (((20, 30),), 45, [IdGap(after=10, before=20), IdGap(after=30, before=None)]),
        (((20, 30), (40, 50)), 45, [IdGap(after=10, before=20), IdGap(after=30, before=40)]),
        (((20, 30), (40, 50)), 15, [IdGap(after=10, before=20), IdGap(after=30, before=40)]),
    ],
)
def test_gaps(ranges: tuple[tuple[int, int], ...], up_to: int | None, expected: list[IdGap]) -> None:
    assert CountedIds(10, ranges).gaps(up_to=up_to) == expected


def test_add_id_says_whether_the_id_was_new() -> None:
    counted = CountedIds(10, [(20, 30)])
    assert [counted.add_id(i) for i in (5, 10, 25, 31, 31, 40)] == [False, False, False, True, False, True]
    assert counted.ranges == ((20, 31), (40, 40))


def test_extend_to_covers_what_one_session_delivered_in_order() -> None:
    counted = CountedIds(10)
    counted.add(100, 100)
    counted.extend_to(100, 180)
    counted.extend_to(180, 150)  # out of order: only the id itself
    assert counted.ranges == ((100, 180),)
    counted.extend_to(180, 300)
    assert counted.ranges == ((100, 300),)


def test_extend_newest_only_grows_a_newest_range_ending_at_the_tail() -> None:
    counted = CountedIds(10, [(20, 30), (40, 50)])
    assert not counted.extend_newest(30, 60)  # 30 ends an older range
    assert not counted.extend_newest(50, 45)  # not above the tail
    assert counted.extend_newest(50, 70)
    assert counted.ranges == ((20, 30), (40, 70))
    assert not CountedIds(10).extend_newest(10, 20)  # no range yet


def test_raise_watermark_drops_ranges_below_and_absorbs_the_touching_one() -> None:
    counted = CountedIds(10, [(20, 30), (41, 50), (60, 70)])
    counted.raise_watermark(40)
    assert (counted.watermark, counted.ranges) == (50, ((60, 70),))


def test_covers() -> None:
    counted = CountedIds(10, [(20, 30)])
    assert counted.covers(1, 10)
    assert counted.covers(20, 30)
    assert counted.covers(22, 25)
    assert not counted.covers(5, 20)
    assert not counted.covers(25, 31)


@pytest.mark.parametrize("text", ["", "1-2", "5-9,11-11,20-400"])
def test_ranges_round_trip_as_text(text: str) -> None:
    assert format_ranges(parse_ranges(text)) == text


def test_a_negative_watermark_or_an_empty_range_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="negative"):
        CountedIds(-1)
    with pytest.raises(ValueError, match="empty range"):
        CountedIds().add(5, 4)


def test_snowflake_time_round_trip() -> None:
    at = datetime.datetime(2026, 3, 4, 5, 6, 7, 890_000, tzinfo=datetime.UTC)
    assert snowflake_time(snowflake_at(at)) == at
    assert snowflake_at(at) < snowflake_at(at + datetime.timedelta(milliseconds=1))


# --- properties ----------------------------------------------------------------------------------------

IDS = st.integers(min_value=0, max_value=200)
RANGES = st.lists(st.tuples(IDS, IDS).map(lambda r: (min(r), max(r))), max_size=12)


def _ids(counted: CountedIds, universe: int = 210) -> set[int]:
    return {i for i in range(universe) if i in counted}


@settings(max_examples=300, deadline=None)
@given(watermark=IDS, ranges=RANGES)
def test_the_set_is_exactly_the_union_and_stays_normalised(watermark: int, ranges: list[tuple[int, int]]) -> None:
    counted = CountedIds(watermark, ranges)
    expected = set(range(watermark + 1)) | {i for first, last in ranges for i in range(first, last + 1)}
    assert _ids(counted) == expected
    previous_last = counted.watermark
    for first, last in counted.ranges:
        assert first > previous_last + 1  # disjoint, not adjacent, above the watermark
        assert first <= last
        previous_last = last


@settings(max_examples=300, deadline=None)
@given(watermark=IDS, ranges=RANGES, order=st.randoms(use_true_random=False))
def test_the_order_of_adding_does_not_matter(watermark: int, ranges: list[tuple[int, int]], order: object) -> None:
    shuffled = list(ranges)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    assert CountedIds(watermark, ranges) == CountedIds(watermark, shuffled)


@settings(max_examples=300, deadline=None)
@given(watermark=IDS, ranges=RANGES, other_watermark=IDS, other_ranges=RANGES)
def test_merge_is_the_union(
    watermark: int, ranges: list[tuple[int, int]], other_watermark: int, other_ranges: list[tuple[int, int]]
) -> None:
    counted = CountedIds(watermark, ranges)
    other = CountedIds(other_watermark, other_ranges)
    merged = counted.copy()
    merged.merge(other)
    assert _ids(merged) == _ids(counted) | _ids(other)


@settings(max_examples=300, deadline=None)
@given(watermark=IDS, ranges=RANGES, up_to=st.none() | IDS)
def test_gaps_are_exactly_what_is_not_counted(watermark: int, ranges: list[tuple[int, int]], up_to: int | None) -> None:
    counted = CountedIds(watermark, ranges)
    in_gaps = {i for i in range(210) if any(g.holds(i) for g in counted.gaps(up_to=up_to))}
    ceiling = counted.highest if up_to is None else max(up_to, counted.highest)
    uncounted_below_ceiling = {i for i in range(ceiling + 1) if i not in counted}
    assert uncounted_below_ceiling <= in_gaps  # nothing uncounted is missed ...
    assert not in_gaps & _ids(counted)  # ... and no counted id is fetched again
    # Filling every gap (as a backfill does) leaves nothing to fetch.
    for gap in counted.gaps(up_to=up_to):
        counted.add(gap.after + 1, (gap.before - 1) if gap.before is not None else max(ceiling, gap.after + 1))
    assert counted.gaps(up_to=up_to) == []


@settings(max_examples=200, deadline=None)
@given(ranges=RANGES)
def test_text_form_round_trips(ranges: list[tuple[int, int]]) -> None:
    counted = CountedIds(0, ranges)
    assert CountedIds(counted.watermark, parse_ranges(format_ranges(counted.ranges))) == counted
