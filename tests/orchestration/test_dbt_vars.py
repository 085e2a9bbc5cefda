"""The pure mapping from partition windows to dbt vars."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from orchestration.dbt_vars import (
    Window,
    daily_vars,
    days_window,
    month_window,
    monthly_vars,
    parse_month,
)


def test_one_day_partition_is_half_open() -> None:
    start = datetime(2026, 10, 5, tzinfo=UTC)
    end = datetime(2026, 10, 6, tzinfo=UTC)
    assert daily_vars(start, end) == {"min_date": "2026-10-05", "max_date": "2026-10-06"}


def test_a_range_of_days_includes_the_last_day() -> None:
    window = days_window(date(2026, 10, 1), date(2026, 10, 31))
    assert (window.start, window.end) == (date(2026, 10, 1), date(2026, 11, 1))


@pytest.mark.parametrize(
    ("month", "expected"),
    [
        (date(2026, 10, 1), (date(2026, 10, 1), date(2026, 11, 1))),
        (date(2026, 12, 17), (date(2026, 12, 1), date(2027, 1, 1))),
        (date(2028, 2, 29), (date(2028, 2, 1), date(2028, 3, 1))),
    ],
)
def test_month_window(month: date, expected: tuple[date, date]) -> None:
    window = month_window(month)
    assert (window.start, window.end) == expected


def test_monthly_vars_cover_whole_months() -> None:
    assert monthly_vars(date(2026, 10, 1), date(2026, 11, 1)) == {
        "min_month": "2026-10-01",
        "max_month": "2026-11-01",
    }
    # a backfill of three monthly partitions in one run
    assert monthly_vars(date(2026, 10, 1), date(2027, 1, 1)) == {
        "min_month": "2026-10-01",
        "max_month": "2027-01-01",
    }
    # a window inside a month widens to the month
    assert monthly_vars(date(2026, 10, 10), date(2026, 10, 11)) == {
        "min_month": "2026-10-01",
        "max_month": "2026-11-01",
    }


def test_empty_window_is_refused() -> None:
    with pytest.raises(ValueError, match="empty window"):
        Window(date(2026, 10, 2), date(2026, 10, 2))


def test_parse_month() -> None:
    assert parse_month("2026-02") == date(2026, 2, 1)
    with pytest.raises(ValueError, match="not a month like"):
        parse_month("2026-13")


def test_late_days_ride_along_and_days_inside_the_window_are_not_repeated() -> None:
    assert daily_vars(
        date(2026, 10, 5),
        date(2026, 10, 6),
        [date(2026, 10, 2), date(2026, 10, 5), date(2026, 9, 30), date(2026, 10, 2)],
    ) == {
        "min_date": "2026-10-05",
        "max_date": "2026-10-06",
        "extra_days": ["2026-09-30", "2026-10-02"],
    }


def test_month_starts_lists_every_month_a_window_touches() -> None:
    from orchestration.dbt_vars import month_starts

    assert month_starts(date(2026, 10, 1), date(2026, 11, 1)) == [date(2026, 10, 1)]
    assert month_starts(date(2026, 11, 15), date(2027, 2, 1)) == [
        date(2026, 11, 1),
        date(2026, 12, 1),
        date(2027, 1, 1),
    ]
    assert month_starts(date(2026, 12, 31), date(2027, 1, 2)) == [
        date(2026, 12, 1),
        date(2027, 1, 1),
    ]
