"""Live usage of one tenant: the dbt view ``intermediate.int_usage_live``.

``GET /v1/usage`` and the quota counters read usage here, not from ``fct_usage_daily``, so
that an event acknowledged a moment ago counts. The rules are the dbt engine's, written
there once: the first arrival of a ``(tenant_id, idempotency_key)`` counts, forever
(``pending_arrivals``), days are UTC days, the aggregation is the metric's
(``usage_by_day``). ``billing db up`` and ``billing serve`` build the view; a test holds
its figures equal to ``fct_usage_daily`` after a dbt run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import psycopg
from psycopg import errors

from ingest.errors import ApiError

LIVE_USAGE = "intermediate.int_usage_live"
# the longest range one read covers, in days (first and last included)
MAX_DAYS = 366


class LiveUsageMissing(ApiError):
    """The warehouse has no live-usage view yet: `billing db up` builds it."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "live_usage_not_built",
            "the warehouse's live usage is not built yet: run `billing db up`",
        )


@dataclass(frozen=True)
class DailyUsage:
    day: date
    quantity: Decimal
    event_count: int


def daily_usage(
    conn: psycopg.Connection, tenant_id: str, metric: str, first: date, last: date
) -> list[DailyUsage]:
    """Per UTC day in first..last (both included), the metric's aggregation for the tenant."""
    try:
        rows = conn.execute(
            f"""select usage_date, quantity, event_count from {LIVE_USAGE}
                where tenant_id = %s and metric = %s and usage_date between %s and %s
                order by usage_date""",
            (tenant_id, metric, first, last),
        ).fetchall()
    except errors.UndefinedTable as exc:
        raise LiveUsageMissing() from exc
    return [DailyUsage(*row) for row in rows]
