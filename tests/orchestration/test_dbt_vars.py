"""The pure mapping from partition windows to dbt vars."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from billing.cli import main
from orchestration.dbt_vars import (
    Window,
    daily_vars,
    days_window,
    month_window,
    monthly_vars,
    parse_day,
    parse_month,
)
from warehouse.settings import get_settings


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
    # the calendar's last month has no next month to end its window
    assert month_window(parse_month("9999-11")).end == date(9999, 12, 1)
    with pytest.raises(ValueError, match="past the calendar's last month, 9999-11"):
        parse_month("9999-12")


def test_parse_day_takes_one_form_and_days_whose_window_ends() -> None:
    assert parse_day("2026-10-01") == date(2026, 10, 1)
    for text in ("20261001", "2026-W40", "2026-02-30", "0999-01-01", " 2026-10-01"):
        with pytest.raises(ValueError, match="is not a date like 2026-10-01"):
            parse_day(text)
    assert days_window(parse_day("9999-12-30"), parse_day("9999-12-30")).end == date.max
    with pytest.raises(ValueError, match="past the calendar's last day, 9999-12-30"):
        parse_day("9999-12-31")


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["run", "daily", "--date", "9999-12-31"], "--date: 9999-12-31 is past the calendar's"),
        (["run", "daily", "--from", "20261001", "--to", "2026-10-02"], "--from: '20261001'"),
        (["run", "monthly", "--month", "9999-12"], "--month: 9999-12 is past the calendar's"),
        (
            ["report", "usage", "--tenant", "acme", "--from", "2026-10-01", "--to", "9999-12-31"],
            "--to: 9999-12-31 is past",
        ),
        (["serve", "--port", "65536"], "'--port': 65536 is not in the range"),
    ],
)
def test_the_cli_refuses_days_and_ports_out_of_range_before_any_work(
    command: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, a run of 9999-12 or up to 9999-12-31 ended in a traceback (an overflow)."""
    monkeypatch.setenv("BILLING_HOME", str(tmp_path))
    monkeypatch.delenv("BILLING_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    result = CliRunner().invoke(main, command)
    get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert list(tmp_path.iterdir()) == []  # refused before any warehouse was started


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
