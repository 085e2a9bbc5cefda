"""Live usage of one tenant: what dbt has deduplicated plus what arrived since.

``GET /v1/usage`` and the quota counters read usage here, not from ``fct_usage_daily``, so
that an event acknowledged a moment ago counts. The rules are the dbt engine's: an event
counts when it is the first arrival of its ``(tenant_id, idempotency_key)``, forever, as
dbt's ``pending_arrivals`` marks it: ``is_first`` in ``int_events_arrivals`` (stored) and in
``int_events_pending`` (not stored yet); days are UTC days; the aggregation is the metric's.
A test holds these figures equal to ``fct_usage_daily`` after a dbt run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import psycopg

ARRIVALS = "intermediate.int_events_arrivals"
PENDING = "intermediate.int_events_pending"
# the longest range one read covers, in days (first and last included)
MAX_DAYS = 366


@dataclass(frozen=True)
class DailyUsage:
    day: date
    quantity: Decimal
    event_count: int


def _events_sql(dbt_has_run: bool) -> str:
    """The counted events of one tenant and metric in [start, end)."""
    where = """tenant_id = %(tenant)s and metric = %(metric)s
               and event_ts >= %(start)s and event_ts < %(end)s"""
    if dbt_has_run:
        return f"""
        select event_seq, amount, event_ts, metadata from {ARRIVALS} where is_first and {where}
        union all
        select event_seq, amount, event_ts, metadata from {PENDING} where is_first and {where}"""
    # before the first daily run nothing is stored: every event is pending, and the first
    # of its key is the earliest received (pending_arrivals with nothing stored)
    return f"""
        select event_seq, amount, event_ts, metadata
        from (select distinct on (idempotency_key) *
              from raw.events where tenant_id = %(tenant)s
              order by idempotency_key, received_at, event_seq) as first_arrivals
        where {where}"""


def _dbt_has_run(conn: psycopg.Connection) -> bool:
    row = conn.execute("select to_regclass(%s) is not null", (PENDING,)).fetchone()
    return bool(row and row[0])


def daily_usage(
    conn: psycopg.Connection, tenant_id: str, metric: str, first: date, last: date
) -> list[DailyUsage]:
    """Per UTC day in first..last (both included), the metric's aggregation for the tenant."""
    sql = f"""
        with events as ({_events_sql(_dbt_has_run(conn))}),
        tagged as (
            select events.*, metric.aggregation,
                   events.metadata ->> metric.property as property_value,
                   (events.event_ts at time zone 'UTC')::date as day
            from events
            cross join (
                select aggregation, property from app.metrics where metric_key = %(metric)s
            ) as metric
        )
        select day,
               case max(aggregation)
                   when 'sum' then sum(amount)
                   when 'count' then count(*)::numeric
                   when 'max' then max(amount)
                   when 'unique_count' then count(distinct property_value)::numeric
                   when 'latest' then (array_agg(amount order by event_ts desc, event_seq desc))[1]
               end as quantity,
               count(*) as event_count
        from tagged
        group by day
        order by day"""
    params = {
        "tenant": tenant_id,
        "metric": metric,
        "start": datetime.combine(first, time(), UTC),
        "end": datetime.combine(last + timedelta(days=1), time(), UTC),
    }
    return [DailyUsage(*row) for row in conn.execute(sql, params).fetchall()]
