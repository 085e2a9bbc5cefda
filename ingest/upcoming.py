"""The upcoming invoice (GET /v1/invoices/upcoming): the current month's invoice priced now,
from every event counted so far, those received a moment ago included.

It is priced by the monthly run's own dbt models, built a second time as views in the
schema `preview` by `billing db up` (dbt_project/macros/preview.sql,
orchestration.pipeline.build_preview),
which read the month and the tenant from two settings of the session: one set of rating
rules, in the dbt SQL, whether a run stores the drafts or a read asks for one tenant now.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import psycopg

from ingest.errors import ApiError
from ingest.routes.reads import invoices_with_lines
from orchestration.pipeline import PREVIEW


def current_month(now: datetime | None = None) -> date:
    """The first day of the calendar month (UTC) that is open now."""
    return (now or datetime.now(UTC)).astimezone(UTC).date().replace(day=1)


class PreviewMissing(ApiError):
    """The warehouse has no preview views yet: `billing db up` builds them."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "upcoming_invoice_not_built",
            "the warehouse's upcoming invoice is not built yet: run `billing db up`",
        )


def upcoming_invoices(
    conn: psycopg.Connection[Any], tenant: str, month: date
) -> list[dict[str, Any]]:
    """The tenant's invoices of ``month`` as the monthly run would price them now (one per
    currency it is billed in; none without a subscription that month), lines nested."""
    with conn.transaction():
        # the views read both settings when they run, so one plan serves every tenant and
        # month: planned once per connection (planning the chain of views costs more than
        # running it for a tenant of modest usage)
        conn.execute(
            """select set_config('billing.preview_month', %s, true),
                      set_config('billing.preview_tenant', %s, true),
                      set_config('plan_cache_mode', 'force_generic_plan', true)""",
            (month.isoformat(), tenant),
        )
        invoices = invoices_with_lines(conn, tenant, month, PREVIEW, prepare=True)
    if invoices is None:
        raise PreviewMissing()
    return invoices
