"""Helpers for billing-engine tests: load data, read invoices back, compare with the rater."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import yaml
from click.testing import CliRunner

from billing.cli import main
from tests.reference_rater import Invoice, RawEvent, SubEvent


@dataclass(frozen=True)
class WarehouseInvoice:
    invoice_id: str
    currency: str
    status: str
    subtotal: int
    tax: int
    total: int
    lines: Counter[tuple[str, str | None, int]]
    credits: Counter[tuple[str, int]]
    amount_due: int


def apply_catalog(doc: dict[str, Any], tmp_path: Path, name: str = "catalog.yaml") -> None:
    file = tmp_path / name
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = CliRunner().invoke(main, ["catalog", "apply", str(file)])
    assert result.exit_code == 0, result.output


def load_raw(url: str) -> tuple[list[RawEvent], list[SubEvent]]:
    with psycopg.connect(url) as conn:
        events = [
            RawEvent(*row)
            for row in conn.execute(
                "select event_seq, tenant_id, metric, amount, event_ts, idempotency_key, metadata "
                "from raw.events"
            )
        ]
        subs = [
            SubEvent(*row)
            for row in conn.execute(
                "select event_seq, subscription_id, tenant_id, action, plan_key, effective_at, "
                "at_period_end from raw.subscription_events"
            )
        ]
    return events, subs


def warehouse_invoices(
    url: str,
    month: date,
    line_types: tuple[str, ...] = ("base_fee", "usage", "minimum", "discount"),
) -> dict[str, WarehouseInvoice]:
    """Invoices of ``month`` by tenant: lines as (type, metric or discount id, amount), the
    credits as (grant id, amount used)."""
    with psycopg.connect(url) as conn:
        heads = conn.execute(
            "select invoice_id, tenant_id, currency, status, subtotal_minor, tax_minor, "
            "total_minor, amount_due_minor from marts.fct_invoices "
            "where period_start = %s::date::timestamptz",
            (month,),
        ).fetchall()
        out = {}
        for invoice_id, tenant, currency, status, subtotal, tax, total, due in heads:
            lines = conn.execute(
                "select line_type, coalesce(metric, discount_id), amount_minor "
                "from marts.fct_invoice_lines where invoice_id = %s and line_type = any(%s)",
                (invoice_id, list(line_types)),
            ).fetchall()
            credits = conn.execute(
                "select grant_id, -amount_minor from marts.fct_invoice_lines "
                "where invoice_id = %s and line_type = 'credit'",
                (invoice_id,),
            ).fetchall()
            out[tenant] = WarehouseInvoice(
                invoice_id,
                currency,
                status,
                subtotal,
                tax,
                total,
                Counter((t, m, int(a)) for t, m, a in lines),
                Counter((g, int(a)) for g, a in credits),
                due,
            )
    return out


def assert_matches(actual: dict[str, WarehouseInvoice], expected: dict[str, Invoice]) -> None:
    assert set(actual) == set(expected)
    for tenant, invoice in expected.items():
        got = actual[tenant]
        assert got.currency == invoice.currency, tenant
        assert got.lines == Counter(invoice.lines), (tenant, got.lines, invoice.lines)
        assert (got.subtotal, got.tax, got.total) == (
            invoice.subtotal,
            invoice.tax,
            invoice.total,
        ), tenant
        assert got.credits == Counter(invoice.credits), (tenant, got.credits, invoice.credits)
        assert got.amount_due == invoice.amount_due, tenant
