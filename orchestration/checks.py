"""Checks on the billing marts that dbt tests cannot express: reconciliation of invoiced
usage with daily usage. Plain functions over a connection; Dagster wraps them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import psycopg


@dataclass(frozen=True)
class Mismatch:
    tenant_id: str
    metric: str
    invoiced: Decimal
    metered: Decimal


RECONCILE_SQL = """
with month as (
    select %(month)s::date::timestamptz as start_at,
           (%(month)s::date + interval '1 month')::timestamptz as end_at
),
single_plan as (
    -- tenants billed on one plan all month: their usage lines cover every event
    select l.tenant_id
    from marts.fct_invoice_lines l, month
    where l.period_start = month.start_at and l.line_type in ('base_fee', 'usage')
    group by l.tenant_id
    having count(distinct l.plan) = 1
),
invoiced as (
    select l.tenant_id, l.metric, sum(l.quantity) as quantity
    from marts.fct_invoice_lines l
    join month on l.period_start = month.start_at
    join single_plan s on s.tenant_id = l.tenant_id
    join app.metrics m on m.metric_key = l.metric and m.aggregation in ('sum', 'count')
    where l.line_type = 'usage'
    group by l.tenant_id, l.metric
),
metered as (
    select d.tenant_id, d.metric, sum(d.quantity) as quantity
    from marts.fct_usage_daily d, month
    where d.usage_date >= month.start_at::date and d.usage_date < month.end_at::date
    group by d.tenant_id, d.metric
),
unbilled as (
    select u.tenant_id, u.metric,
           sum(case m.aggregation when 'sum' then u.amount_sum else u.event_count end)
               as quantity
    from marts.fct_unbilled_usage u
    join app.metrics m on m.metric_key = u.metric, month
    where u.usage_date >= month.start_at::date and u.usage_date < month.end_at::date
    group by u.tenant_id, u.metric
)
select i.tenant_id, i.metric, i.quantity,
       coalesce(d.quantity, 0) - coalesce(u.quantity, 0)
from invoiced i
left join metered d on d.tenant_id = i.tenant_id and d.metric = i.metric
left join unbilled u on u.tenant_id = i.tenant_id and u.metric = i.metric
where i.quantity <> coalesce(d.quantity, 0) - coalesce(u.quantity, 0)
order by 1, 2
"""


def reconcile_month(conn: psycopg.Connection, month: date) -> list[Mismatch]:
    """Additive usage (sum, count) invoiced for ``month`` against the daily usage, less the
    usage no subscription covers. Empty when they agree."""
    rows = conn.execute(RECONCILE_SQL, {"month": month}).fetchall()
    return [Mismatch(*row) for row in rows]
