"""`billing demo` end to end: catalog, a month of usage, dbt, invoices whose every number
matches an independent rater, and a second run that counts nothing twice."""

from __future__ import annotations

from collections import Counter
from datetime import date

import psycopg
import pytest

from orchestration.reports import money
from tests.helpers import REPO, billing
from tests.reference_rater import RawEvent, SubEvent, rate_month
from warehouse.catalog import load_catalog_file

pytestmark = pytest.mark.slow


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
) -> dict[str, tuple[str, int, int, int, Counter[tuple[str, str | None, int]]]]:
    with psycopg.connect(url) as conn:
        heads = conn.execute(
            "select invoice_id, tenant_id, currency, subtotal_minor, tax_minor, total_minor "
            "from marts.fct_invoices where period_start = '2026-10-01'"
        ).fetchall()
        out = {}
        for invoice_id, tenant, currency, subtotal, tax, total in heads:
            lines = conn.execute(
                "select line_type, metric, amount_minor from marts.fct_invoice_lines "
                "where invoice_id = %s",
                (invoice_id,),
            ).fetchall()
            out[tenant] = (currency, subtotal, tax, total, Counter(map(tuple, lines)))
    return out  # type: ignore[return-value]


def test_demo_invoices_match_the_reference_rater_and_rerun_counts_nothing_twice(
    warehouse: str,
) -> None:
    first = billing("demo", check=True)
    events, subs = load_raw(warehouse)
    assert len(events) > 10_000
    assert len({(e.tenant_id, e.key) for e in events}) < len(events)  # the demo sends retries

    catalog = load_catalog_file(REPO / "examples" / "demo_catalog.yaml")
    expected = rate_month(catalog, events, subs, date(2026, 10, 1))
    actual = warehouse_invoices(warehouse)
    assert set(actual) == set(expected) == {"acme", "globex", "initech", "umbrella"}
    models = {c.model for p in catalog.plans for c in p.charges}
    assert models == {"per_unit", "package", "graduated", "volume"}
    for tenant, invoice in expected.items():
        currency, subtotal, tax, total, lines = actual[tenant]
        assert currency == invoice.currency
        assert lines == Counter(invoice.lines), tenant
        assert (subtotal, tax, total) == (invoice.subtotal, invoice.tax, invoice.total), tenant
        # what the demo printed is what the warehouse holds
        assert money(total, currency) in first.stdout

    second = billing("demo", check=True)
    events_again, _ = load_raw(warehouse)
    assert len(events_again) == 2 * len(events)  # every event was sent again...
    assert warehouse_invoices(warehouse) == actual  # ...and none counted twice
    assert second.stdout.count("total") == first.stdout.count("total")
