"""Pure mapping from a time window to the dbt vars of the billing models (half-open), and
the billing calendar's months (UTC) the windows are cut from."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

NO_DAY = "1970-01-01"  # min_date = max_date: the empty window

# A UTC day as users write it, in the CLI and the API (which publishes it in its OpenAPI
# document): YYYY-MM-DD, no other ISO form (20261001, 2026-W40).
DAY_PATTERN = r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
# The calendar's last day and month whose window has an end (the day or month after it)
LAST_DAY = date.max - timedelta(days=1)
LAST_MONTH = date(date.max.year, 11, 1)


@dataclass(frozen=True)
class Window:
    """A half-open window of UTC days [start, end)."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"empty window: {self.start} .. {self.end}")


def _as_date(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def days_window(first_day: date, last_day: date) -> Window:
    """The window covering the days first_day..last_day, both included."""
    return Window(first_day, last_day + timedelta(days=1))


def current_month(now: datetime | None = None) -> date:
    """The first day of the calendar month (UTC, the billing calendar's) that is open now."""
    return (now or datetime.now(UTC)).astimezone(UTC).date().replace(day=1)


def month_window(month: date) -> Window:
    """The window of the calendar month containing ``month``."""
    start = month.replace(day=1)
    end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return Window(start, end)


def parse_day(text: str) -> date:
    """``YYYY-MM-DD`` to that day. A day that does not exist (2026-02-30), another form, or
    one past LAST_DAY is refused (ValueError, its message for the user)."""
    try:
        if not re.fullmatch(DAY_PATTERN, text):
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date like 2026-10-01") from None
    if day > LAST_DAY:
        raise ValueError(f"{day} is past the calendar's last day, {LAST_DAY}")
    return day


def parse_month(text: str) -> date:
    """``YYYY-MM`` to the first day of that month; one past LAST_MONTH is refused."""
    try:
        month = datetime.strptime(text, "%Y-%m").date()
    except ValueError:
        raise ValueError(f"{text!r} is not a month like 2026-10") from None
    if month > LAST_MONTH:
        raise ValueError(f"{text} is past the calendar's last month, {LAST_MONTH:%Y-%m}")
    return month


def daily_vars(
    start: date | datetime, end: date | datetime, extra_days: Iterable[date] = ()
) -> dict[str, Any]:
    """dbt vars for the daily usage models over [start, end), plus whole late days."""
    window = Window(_as_date(start), _as_date(end))
    found: dict[str, Any] = {
        "min_date": window.start.isoformat(),
        "max_date": window.end.isoformat(),
    }
    return found | _late_days(d for d in extra_days if not window.start <= d < window.end)


def late_days_vars(extra_days: Iterable[date]) -> dict[str, Any]:
    """dbt vars for a daily run with no window of its own: only the late days."""
    return {"min_date": NO_DAY, "max_date": NO_DAY} | _late_days(extra_days)


def _late_days(days: Iterable[date]) -> dict[str, Any]:
    late = sorted(set(days))
    return {"extra_days": [d.isoformat() for d in late]} if late else {}


def whole_months(start: date | datetime, end: date | datetime) -> Window:
    """[start, end) widened to whole calendar months: an invoice is always computed for its
    whole month."""
    window = Window(_as_date(start), _as_date(end))
    return Window(window.start.replace(day=1), month_window(window.end - timedelta(days=1)).end)


def monthly_vars(start: date | datetime, end: date | datetime) -> dict[str, str]:
    """dbt vars for the invoice models over the months in [start, end) (``whole_months``)."""
    months = whole_months(start, end)
    return {"min_month": months.start.isoformat(), "max_month": months.end.isoformat()}


def month_starts(start: date, end: date) -> list[date]:
    """The first days of the calendar months that [start, end) touches."""
    window = Window(start, end)
    months = [window.start.replace(day=1)]
    while (following := month_window(months[-1]).end) < window.end:
        months.append(following)
    return months
