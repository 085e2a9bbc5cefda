"""Live usage of one tenant: what dbt has deduplicated plus what arrived since.

``GET /v1/usage`` and the quota counters read usage here, not from ``fct_usage_daily``, so
that an event acknowledged a moment ago counts. The rules are the dbt engine's: an event
counts when it is the first arrival of its ``(tenant_id, idempotency_key)``, forever
(``int_events_arrivals.is_first``, or, for events dbt has not seen yet, the earliest
arrival with no first arrival stored before it); days are UTC days; the aggregation is the
metric's. A test holds these figures equal to ``fct_usage_daily`` after a dbt run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import psycopg

ARRIVALS = "intermediate.int_events_arrivals"
# as dbt's `dedup_lookback_hours`: a batch committed late is stamped up to this much earlier
LOOKBACK = "1 hour"
# the longest range one read covers, in days (first and last included)
MAX_DAYS = 366


@dataclass(frozen=True)
class DailyUsage:
    day: date
    quantity: Decimal
    event_count: int


def _events_sql(has_arrivals: bool) -> str:
    """The counted events of one tenant and metric in [start, end)."""
    # events dbt has not seen yet: all of them before its first run
    fresh_filter = "true"
    stored = ""
    if has_arrivals:
        fresh_filter = f"""e.received_at >= coalesce(
                    (select max(received_at) from {ARRIVALS}), '-infinity'::timestamptz
                ) - interval '{LOOKBACK}'
              and not exists (select 1 from {ARRIVALS} s where s.event_seq = e.event_seq)"""
        stored = f"""
        select a.event_seq, a.amount, a.event_ts, a.metadata
        from {ARRIVALS} a
        where a.is_first and a.tenant_id = %(tenant)s and a.metric = %(metric)s
          and a.event_ts >= %(start)s and a.event_ts < %(end)s
        union all"""
    fresh = f"""
        select f.event_seq, f.amount, f.event_ts, f.metadata
        from (
            select e.*, row_number() over (
                       partition by e.idempotency_key order by e.received_at, e.event_seq
                   ) as arrival_rank
            from raw.events e
            where e.tenant_id = %(tenant)s and {fresh_filter}
        ) as f
        where f.arrival_rank = 1 and f.metric = %(metric)s
          and f.event_ts >= %(start)s and f.event_ts < %(end)s"""
    if has_arrivals:  # a key counted before is never first again
        fresh += f"""
          and not exists (
                select 1 from {ARRIVALS} k
                where k.is_first and k.tenant_id = %(tenant)s
                  and k.idempotency_key = f.idempotency_key
              )"""
    return stored + fresh


def _has_arrivals(conn: psycopg.Connection) -> bool:
    row = conn.execute("select to_regclass(%s) is not null", (ARRIVALS,)).fetchone()
    return bool(row and row[0])


def daily_usage(
    conn: psycopg.Connection, tenant_id: str, metric: str, first: date, last: date
) -> list[DailyUsage]:
    """Per UTC day in first..last (both included), the metric's aggregation for the tenant."""
    sql = f"""
        with events as ({_events_sql(_has_arrivals(conn))}),
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
