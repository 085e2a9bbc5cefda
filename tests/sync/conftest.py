"""A warehouse with finalized invoices to push, and a fake Stripe to push them to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from billing.cli import main
from tests.fake_stripe import API_KEY, FakeStripe, FakeStripeServer
from warehouse.settings import Settings

CATALOG = """
metrics:
  - {key: api_calls, aggregation: sum}
plans:
  - key: basic
    name: Basic
    interval: month
    currency: usd
    base_price: "10.00"
    charges:
      - {metric: api_calls, model: per_unit, unit_price: "0.01"}
tenants:
  - {id: acme, name: Acme, currency: usd, tax_rate: "0.0825", stripe_customer_id: cus_acme}
  - {id: initech, name: Initech, currency: eur, tax_rate: "0.19", stripe_customer_id: cus_initech}
  - {id: kuwait, name: Kuwait Co, currency: kwd, tax_rate: "0", stripe_customer_id: cus_kuwait}
  - {id: nocus, name: No Customer, currency: usd, tax_rate: "0"}
  - {id: ghost, name: Ghost, currency: usd, tax_rate: "0", stripe_customer_id: cus_deleted}
"""

# invoice id -> (tenant, currency, month, lines (line id, amount)); tax per the tenant's rate
INVOICES: dict[str, tuple[str, str, str, list[tuple[str, int]]]] = {
    "inv_acme_09": ("acme", "usd", "2026-09-01", [("l1", 1000), ("l2", 2345)]),
    "inv_acme_10": ("acme", "usd", "2026-10-01", [("l1", 1000), ("l2", 500), ("adj", -120)]),
    "inv_initech_10": ("initech", "eur", "2026-10-01", [("l1", 4900)]),
}
BROKEN: dict[str, tuple[str, str, str, list[tuple[str, int]]]] = {
    "inv_kuwait_10": ("kuwait", "kwd", "2026-10-01", [("l1", 10500)]),
    "inv_nocus_10": ("nocus", "usd", "2026-10-01", [("l1", 1000)]),
    "inv_ghost_10": ("ghost", "usd", "2026-10-01", [("l1", 1000)]),
}
TAX = {"acme": "0.0825", "initech": "0.19"}


def expected_total(invoice_id: str) -> int:
    from decimal import ROUND_HALF_UP, Decimal

    tenant, _, _, lines = {**INVOICES, **BROKEN}[invoice_id]
    subtotal = sum(amount for _, amount in lines)
    tax = (subtotal * Decimal(TAX.get(tenant, "0"))).quantize(Decimal(1), ROUND_HALF_UP)
    return subtotal + int(tax)


def insert_finalized(
    url: str, invoices: dict[str, tuple[str, str, str, list[tuple[str, int]]]]
) -> None:
    with psycopg.connect(url) as conn:
        for invoice_id, (tenant, currency, month, lines) in invoices.items():
            subtotal = sum(amount for _, amount in lines)
            total = expected_total(invoice_id)
            conn.execute(
                """insert into app.finalized_invoices (invoice_id, tenant_id, currency,
                       period_start, period_end, subtotal_minor, tax_minor, total_minor)
                   values (%s, %s, %s, %s::date, %s::date + interval '1 month', %s, %s, %s)""",
                (invoice_id, tenant, currency, month, month, subtotal, total - subtotal, total),
            )
            for line_id, amount in lines:
                conn.execute(
                    """insert into app.finalized_invoice_lines (invoice_id, line_id, tenant_id,
                           line_type, amount_minor, currency, description, service_start,
                           service_end, period_start)
                       values (%s, %s, %s, %s, %s, %s, %s, %s::date,
                               %s::date + interval '1 month', %s::date)""",
                    (
                        invoice_id,
                        f"{invoice_id}:{line_id}",
                        tenant,
                        "adjustment" if amount < 0 else "usage",
                        amount,
                        currency,
                        f"line {line_id}",
                        month,
                        month,
                        month,
                    ),
                )


@pytest.fixture
def finalized(warehouse: str, tmp_path: Path) -> str:
    """The test database with the catalog and the finalized invoices (the good ones)."""
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    result = CliRunner().invoke(main, ["catalog", "apply", str(catalog)])
    assert result.exit_code == 0, result.output
    insert_finalized(warehouse, INVOICES)
    return warehouse


@pytest.fixture
def stripe_server() -> Iterator[FakeStripeServer]:
    fake = FakeStripe(customers={"cus_acme", "cus_initech", "cus_kuwait"})
    with FakeStripeServer(fake) as server:
        yield server


def push_settings(url: str, stripe_url: str, retries: int = 0, timeout: float = 0.5) -> Settings:
    return Settings(
        database_url=url,
        stripe_api_key=API_KEY,  # type: ignore[arg-type]
        stripe_api_base=stripe_url,
        stripe_max_network_retries=retries,
        stripe_timeout_seconds=timeout,
    )
