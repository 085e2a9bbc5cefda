"""Live usage of one tenant: the dbt view ``intermediate.int_usage_live``.

``GET /v1/usage`` and the quota counters read usage here, not from ``fct_usage_daily``, so
that an event acknowledged a moment ago counts. The rules are the dbt engine's, written
there once: the first arrival of a ``(tenant_id, idempotency_key)`` counts, forever
(``pending_arrivals``), days are UTC days, the aggregation is the metric's
(``usage_by_day``). ``billing db up`` and ``billing serve`` build the view; a test holds
its figures equal to ``fct_usage_daily`` after a dbt run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import psycopg
from psycopg import errors, sql

from ingest.errors import NotBuilt

LIVE_USAGE = "intermediate.int_usage_live"
# the longest range one read covers, in days (first and last included)
MAX_DAYS = 366


class LiveUsageMissing(NotBuilt):
    """The warehouse has no live-usage view yet: `billing db up` builds it."""

    def __init__(self) -> None:
        super().__init__("live_usage_not_built", "live usage")


@dataclass(frozen=True)
class DailyUsage:
    day: date
    quantity: Decimal
    event_count: int
    # the values of the dimensions asked for (group_by), none when not asked
    dimensions: dict[str, str | None] = field(default_factory=dict)


def daily_usage(
    conn: psycopg.Connection,
    tenant_id: str,
    metric: str,
    first: date,
    last: date,
    group_by: Sequence[str] = (),
) -> list[DailyUsage]:
    """Per UTC day in first..last (both included), the metric's aggregation for the tenant,
    per combination of the values of ``group_by`` (some of the metric's dimensions). The
    view keeps a row per combination of all its dimensions; the rows of a day (or of a
    combination of fewer of them) add up, or the largest counts for a max metric (the
    catalog gives dimensions to sum, count and max metrics only)."""
    picked = sql.SQL(", ").join(
        sql.SQL("cast(usage.dimensions as jsonb) ->> {}").format(sql.Literal(name))
        for name in group_by
    )
    grouped = sql.SQL(", {}").format(picked) if group_by else sql.SQL("")
    try:
        rows = conn.execute(
            sql.SQL(
                """select usage.usage_date,
                          case when max(metrics.aggregation) = 'max' then max(usage.quantity)
                               else sum(usage.quantity) end,
                          sum(usage.event_count){grouped}
                   from {live} as usage
                   inner join app.metrics on metrics.metric_key = usage.metric
                   where usage.tenant_id = %s and usage.metric = %s
                     and usage.usage_date between %s and %s
                   group by usage.usage_date{grouped}
                   order by usage.usage_date{grouped}"""
            ).format(live=sql.SQL(LIVE_USAGE), grouped=grouped),
            (tenant_id, metric, first, last),
        ).fetchall()
    except errors.UndefinedTable as exc:
        raise LiveUsageMissing() from exc
    return [
        DailyUsage(row[0], row[1], int(row[2]), dict(zip(group_by, row[3:], strict=True)))
        for row in rows
    ]
