"""The upcoming invoice (GET /v1/invoices/upcoming): the current month's invoice priced now,
from every event counted so far, those received a moment ago included.

It is priced by the monthly run's own dbt models, built a second time by `billing db up`
as one view in the schema `preview`, `preview.fct_upcoming_invoices` (the invoices and
their lines side by side: dbt_project/macros/preview.sql,
orchestration.pipeline.build_preview), which reads the month and the tenant from two
settings of the session: one set of rating rules, in the dbt SQL, whether a run stores the
drafts or a read asks for one tenant now.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg

from ingest.errors import NotBuilt
from ingest.routes.reads import INVOICE_COLUMNS, LINE_COLUMNS, invoice_line
from orchestration.pipeline import PREVIEW_INVOICES
from warehouse.db import relations_exist


class PreviewMissing(NotBuilt):
    """The warehouse has no preview view yet: `billing db up` builds it."""

    def __init__(self) -> None:
        super().__init__("upcoming_invoice_not_built", "upcoming invoice")


def set_preview(conn: psycopg.Connection[Any], tenant: str, month: date) -> None:
    """The preview's tenant and month for the rest of the transaction. The view reads both
    settings when it runs, so one plan serves every tenant and month: planned once per
    connection, the first time it reads."""
    conn.execute(
        """select set_config('billing.preview_month', %s, true),
                  set_config('billing.preview_tenant', %s, true),
                  set_config('plan_cache_mode', 'force_generic_plan', true)""",
        (month.isoformat(), tenant),
    )


def upcoming_invoices(
    conn: psycopg.Connection[Any], tenant: str, month: date
) -> list[dict[str, Any]]:
    """The tenant's invoices of ``month`` as the monthly run would price them now (one per
    currency it is billed in; none without a subscription that month), lines nested, as
    GET /v1/invoices answers them."""
    with conn.transaction():
        if not relations_exist(conn, PREVIEW_INVOICES):
            raise PreviewMissing()
        set_preview(conn, tenant, month)
        rows = conn.execute(
            f"""select {", ".join(INVOICE_COLUMNS + LINE_COLUMNS)} from {PREVIEW_INVOICES}
                where tenant_id = %s and period_start = %s::date::timestamptz
                order by currency, invoice_id, line_type, line_id""",
            (tenant, month),
            prepare=True,
        )
        invoices: dict[str, dict[str, Any]] = {}
        split = len(INVOICE_COLUMNS)
        for row in rows:
            values = dict(zip(INVOICE_COLUMNS, row[:split], strict=True))
            invoice = invoices.setdefault(values["invoice_id"], values | {"lines": []})
            if row[split] is not None:  # line_id: an invoice without a line has one row
                invoice["lines"].append(invoice_line(row[split:]))
    return list(invoices.values())
