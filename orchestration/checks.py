"""Checks on the billing marts that dbt tests cannot express, read from the reconciliation
mart (`marts.fct_billing_reconciliation`). Plain functions over a connection; Dagster
wraps them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import psycopg


@dataclass(frozen=True)
class Mismatch:
    tenant_id: str
    problem: str
    metric: str | None
    invoiced: Decimal | int | None
    measured: Decimal | int | None


def reconcile_month(conn: psycopg.Connection, month: date) -> list[Mismatch]:
    """What disagrees in ``month``: additive usage invoiced against the daily usage (less
    the usage no subscription covers), and paid amounts against invoice totals. Empty when
    everything agrees."""
    rows = conn.execute(
        """select tenant_id, problem, metric,
                  coalesce(invoiced_quantity, invoiced_minor),
                  coalesce(metered_quantity, paid_minor)
           from marts.fct_billing_reconciliation
           where month = %(month)s::date::timestamptz
           order by tenant_id, problem, metric""",
        {"month": month},
    ).fetchall()
    return [Mismatch(*row) for row in rows]
