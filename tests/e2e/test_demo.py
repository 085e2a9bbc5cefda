"""`billing demo` end to end: catalog, a month of usage, dbt, invoices whose every number
matches an independent rater, and a second run that counts nothing twice."""

from __future__ import annotations

from datetime import date

import pytest

from billing.reports import money
from tests.engine_helpers import assert_matches, load_raw, warehouse_invoices
from tests.helpers import REPO, billing
from tests.reference_rater import rate_month
from warehouse.catalog import load_catalog_file

pytestmark = pytest.mark.slow
OCTOBER = date(2026, 10, 1)


@pytest.mark.minutes(0.5)
def test_demo_invoices_match_the_reference_rater_and_rerun_counts_nothing_twice(
    warehouse: str,
) -> None:
    first = billing("demo", check=True)
    events, subs = load_raw(warehouse)
    assert len(events) > 10_000
    assert len({(e.tenant_id, e.key) for e in events}) < len(events)  # the demo sends retries

    catalog = load_catalog_file(REPO / "examples" / "demo_catalog.yaml")
    expected = rate_month(catalog, events, subs, OCTOBER)
    actual = warehouse_invoices(warehouse, OCTOBER)
    assert set(actual) == {"acme", "globex", "initech", "umbrella", "cyberdyne"}
    assert {c.model for p in catalog.plans for c in p.charges} == {
        "per_unit",
        "package",
        "graduated",
        "volume",
    }
    assert_matches(actual, expected)
    for invoice in actual.values():  # what the demo printed is what the warehouse holds
        assert money(invoice.total, invoice.currency) in first.stdout

    second = billing("demo", check=True)
    events_again, _ = load_raw(warehouse)
    assert len(events_again) == 2 * len(events)  # every event was sent again...
    assert warehouse_invoices(warehouse, OCTOBER) == actual  # ...and none counted twice
    assert second.stdout.count("total") == first.stdout.count("total")
