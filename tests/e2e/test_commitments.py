"""Minimum commitments, discounts and prepaid credits through the production path: the
catalog and the admin API record them, the monthly schedule's tick closes October and pushes
it to (a fake) Stripe, a tenant's late event reaches November's draft as adjustments of each
line type, and the tenant reads its credits with its own key. Every invoice is also checked
against the independent reference rater."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner
from dagster import DagsterInstance
from fastapi.testclient import TestClient

from billing.cli import main
from ingest.app import create_app
from ingest.writer import Event, copy_events
from orchestration.pipeline import PipelineError, finalize_month, run_monthly, watermark
from tests.e2e.test_corrections import adjustments
from tests.engine_helpers import apply_catalog, assert_matches, load_raw, warehouse_invoices
from tests.fake_stripe import API_KEY, FakeStripe, FakeStripeServer
from tests.ingest.conftest import ADMIN_KEY
from tests.ingest.test_subscriptions_and_reads import bearer, tenant_key
from tests.orchestration.test_dagster_runs import execute, tick
from tests.reference_rater import rate_month
from warehouse.catalog import CreditGrant, parse_catalog, record_grant, void_grant
from warehouse.settings import get_settings

pytestmark = pytest.mark.slow
OCT, NOV = date(2026, 10, 1), date(2026, 11, 1)
CATALOG: dict[str, Any] = {
    "metrics": [{"key": "api_calls", "aggregation": "sum"}],
    "plans": [
        {
            "key": "committed",
            "name": "Committed",
            "interval": "month",
            "currency": "usd",
            "base_price": "10.00",
            "minimum_commitment": "50.00",
            "charges": [{"metric": "api_calls", "model": "per_unit", "unit_price": "0.01"}],
        }
    ],
    "tenants": [
        {
            "id": "acme",
            "name": "Acme",
            "currency": "usd",
            "tax_rate": "0.10",
            "stripe_customer_id": "cus_acme",
        }
    ],
    "subscriptions": [
        {"id": "s_acme", "tenant_id": "acme", "plan": "committed", "start": "2026-10-01T00:00:00Z"}
    ],
    "discounts": [
        {
            "id": "d_launch",
            "tenant_id": "acme",
            "description": "Launch: 20% off API calls",
            "rate": "0.2",
            "starts": "2026-10",
            "months": 2,
            "applies_to": ["api_calls"],
        },
        {"id": "d_fixed", "tenant_id": "acme", "amount": "5.00", "starts": "2026-10"},
    ],
    "credit_grants": [
        {
            "id": "g_small",
            "tenant_id": "acme",
            "amount": "20.00",
            "granted_at": "2026-09-01T00:00:00Z",
            "expires_at": "2026-12-31T00:00:00Z",
        },
        {
            "id": "g_big",
            "tenant_id": "acme",
            "amount": "60.00",
            "granted_at": "2026-09-15T00:00:00Z",
            "priority": 1,
        },
        {
            # expired before October's invoice was issued: never used
            "id": "g_gone",
            "tenant_id": "acme",
            "amount": "30.00",
            "granted_at": "2026-09-01T00:00:00Z",
            "expires_at": "2026-10-15T00:00:00Z",
        },
    ],
}


def calls(count: int, at: datetime, key: str) -> Event:
    return Event("acme", "api_calls", Decimal(count), at, key)


def credits(client: TestClient, **params: str) -> dict[str, Any]:
    response = client.get("/v1/credits", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def check_against_rater(url: str, month: date, used: dict[str, int], voided: set[str]) -> None:
    events, subs = load_raw(url)
    catalog = parse_catalog(yaml.safe_dump(CATALOG), "catalog.yaml")
    rated = rate_month(catalog, events, subs, month, used, frozenset(voided))
    got = warehouse_invoices(url, month)
    assert_matches(got, rated)


@pytest.mark.minutes(0.25)
def test_commitments_discounts_and_credits_close_push_and_correct(
    warehouse: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BILLING_ADMIN_KEY", ADMIN_KEY)
    apply_catalog(CATALOG, tmp_path)
    with psycopg.connect(warehouse) as conn:
        copy_events(conn, [calls(2000, datetime(2026, 10, 5, tzinfo=UTC), "oct-1")])

    with TestClient(create_app(), headers=bearer(ADMIN_KEY)) as admin:
        # the admin grants a spare credit, then voids it: never used
        spare = {"tenant_id": "acme", "amount": "10.00", "priority": 9, "id": "g_spare"}
        created = admin.post("/v1/credits", json=spare)
        assert created.status_code == 201, created.text
        assert admin.post("/v1/credits", json=spare).status_code == 201  # the same grant
        changed = admin.post("/v1/credits", json=spare | {"amount": "11.00"})
        assert changed.status_code == 409, changed.text
        assert changed.json()["error"]["details"][0]["field"] == "amount"
        bad = admin.post("/v1/credits", json={"tenant_id": "acme", "amount": "1.001"})
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "amount"
        voided = admin.post("/v1/credits/g_spare/void", json={"reason": "given by mistake"})
        assert voided.status_code == 200, voided.text
        assert admin.post("/v1/credits/nope/void", json={}).status_code == 404

    # October: usage 20.00 below the 50.00 minimum (a 30.00 true-up), base fee 10.00; 5.00
    # off the invoice, then 20% off the API calls (4.00): 51.00, tax 5.10, total 56.10;
    # g_small pays 20.00 of it and g_big (priority 1) the other 36.10
    fake = FakeStripe(customers={"cus_acme"})
    with FakeStripeServer(fake) as stripe_server:
        monkeypatch.setenv("BILLING_STRIPE_API_KEY", API_KEY)
        monkeypatch.setenv("BILLING_STRIPE_API_BASE", stripe_server.url)
        get_settings.cache_clear()
        instance = DagsterInstance.ephemeral()
        (request,) = tick(
            instance, "monthly_invoices_0200_utc_on_1st", datetime(2026, 11, 1, 2, tzinfo=UTC)
        )
        execute(instance, "monthly_invoices_0200_utc_on_1st", request)
    october = warehouse_invoices(warehouse, OCT)["acme"]
    assert october.status == "pending"
    assert october.lines == Counter(
        {
            ("base_fee", None, 1000): 1,
            ("usage", "api_calls", 2000): 1,
            ("minimum", None, 3000): 1,
            ("discount", "d_fixed", -500): 1,
            ("discount", "d_launch", -400): 1,
        }
    )
    assert (october.subtotal, october.tax, october.total) == (5100, 510, 5610)
    assert october.credits == Counter({("g_small", 2000): 1, ("g_big", 3610): 1})
    assert october.amount_due == 0
    check_against_rater(warehouse, OCT, {}, {"g_spare"})
    # Stripe holds every line, discounts and credits included, and its total is ours
    (pushed,) = fake.invoice_for(october.invoice_id)
    assert pushed["total"] == 0
    amounts = sorted(item["amount"] for item in fake.items_of(pushed["id"]))
    assert amounts == sorted([1000, 2000, 3000, -500, -400, 510, -2000, -3610])

    # a late October event, sent with the tenant's key after the close, re-rates October:
    # usage +30.00 meets the minimum (its true-up -30.00) and 20% off takes 6.00 more
    key = tenant_key("acme")
    with TestClient(create_app(), headers=bearer(key)) as client:
        sent = client.post(
            "/v1/events",
            json={
                "events": [
                    {
                        "tenant_id": "acme",
                        "metric": "api_calls",
                        "amount": 3000,
                        "timestamp": "2026-10-20T00:00:00Z",
                        "idempotency_key": "oct-late",
                    }
                ]
            },
        )
        assert sent.status_code in (200, 202), sent.text
    with psycopg.connect(warehouse) as conn:
        copy_events(conn, [calls(1000, datetime(2026, 11, 3, tzinfo=UTC), "nov-1")])
    run_monthly(NOV, quiet=True)
    assert warehouse_invoices(warehouse, OCT)["acme"] == october  # finalized never changes
    assert adjustments(warehouse, NOV) == {
        ("acme", "api_calls", OCT): 3000,
        ("acme", None, OCT): -3000 - 600,
    }
    with psycopg.connect(warehouse) as conn:
        corrected = conn.execute(
            """select corrected_line_type, discount_id, amount_minor, description
               from marts.fct_invoice_lines
               where line_type = 'adjustment' and period_start = %s
               order by corrected_line_type""",
            (NOV,),
        ).fetchall()
    assert corrected == [
        ("discount", "d_launch", -600, "correction of 2026-10: discount d_launch"),
        ("minimum", None, -3000, "correction of 2026-10: minimum commitment"),
        ("usage", None, 3000, "correction of 2026-10: api_calls"),
    ]
    # November: base 10.00, usage 10.00, true-up 40.00, 5.00 and 2.00 off, the corrections
    # (-6.00): 47.00, tax 4.70, total 51.70; g_small is spent, g_big has 23.90 left and runs
    # out in the middle of it: 27.80 due
    november = warehouse_invoices(warehouse, NOV)["acme"]
    assert (november.subtotal, november.tax, november.total) == (4700, 470, 5170)
    assert november.credits == Counter({("g_big", 2390): 1})
    assert november.amount_due == 2780

    # the tenant reads its balances with its own key: what finalized invoices used
    with TestClient(create_app(), headers=bearer(key)) as client:
        read = credits(client)
        assert client.get("/v1/credits", params={"tenant_id": "other"}).status_code == 403
        assert client.post("/v1/credits", json=spare).status_code == 403
    grants = {g["grant_id"]: g for g in read["grants"]}
    # g_small, spent, shows `expired` from its expires_at on (DECISIONLOG.md), 0 of it expired
    (small,) = (g for g in CATALOG["credit_grants"] if g["id"] == "g_small")
    small_ended = datetime.now(UTC) >= datetime.fromisoformat(small["expires_at"])
    assert {g: (v["status"], v["used_minor"], v["balance_minor"]) for g, v in grants.items()} == {
        "g_small": ("expired" if small_ended else "used", 2000, 0),
        "g_big": ("active", 3610, 2390),
        "g_gone": ("expired", 0, 0),
        "g_spare": ("voided", 0, 0),
    }
    assert grants["g_gone"]["expired_minor"] == 3000
    assert grants["g_small"]["expired_minor"] == 0
    assert read["balances"] == [{"tenant_id": "acme", "currency": "usd", "balance_minor": 2390}]
    result = CliRunner().invoke(main, ["credits", "list", "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    assert "acme: 23.90 USD left" in result.output

    # the revenue mart: invoiced net of discounts, credits apart, nothing left to collect
    with psycopg.connect(warehouse) as conn:
        revenue = conn.execute(
            """select invoiced_minor, discounts_minor, credits_minor, outstanding_minor
               from marts.fct_revenue_monthly where month = %s""",
            (OCT,),
        ).fetchone()
    assert revenue == (5610, 900, 5610, 0)
    # MRR: the base fee, usage with its true-up, net of the discounts
    with psycopg.connect(warehouse) as conn:
        mrr = conn.execute(
            """select mrr_minor, recurring_minor, usage_minor, discounts_minor
               from marts.fct_mrr_monthly where tenant_id = 'acme' and month = %s""",
            (OCT,),
        ).fetchone()
    assert mrr == (5100, 1000, 5000, -900)


@pytest.mark.minutes(0.2)
def test_a_close_refuses_credits_another_close_or_a_void_took_meanwhile(
    warehouse: str, tmp_path: Path
) -> None:
    """Two months priced from the same balance, closed one after the other: the second close
    finds its grant used by the first and freezes nothing; so does a close after a void.
    Running the month again prices it with the balance as it is."""
    doc = {**CATALOG, "discounts": [], "credit_grants": [CATALOG["credit_grants"][0]]}
    apply_catalog(doc, tmp_path)
    with psycopg.connect(warehouse) as conn:
        copy_events(conn, [calls(2000, datetime(2026, 10, 5, tzinfo=UTC), "oct-1")])
    run_monthly(NOV, quiet=True)  # November's draft would use all of g_small, as October's
    run_monthly(OCT, finalize=True, quiet=True)
    with pytest.raises(PipelineError, match="credit grant 'g_small' would be used past"):
        finalize_month(NOV, watermark())
    assert set(warehouse_invoices(warehouse, NOV)["acme"].credits) == {("g_small", 2000)}
    with psycopg.connect(warehouse) as conn:
        assert conn.execute(
            "select count(*) from app.finalized_invoices where period_start = %s", (NOV,)
        ).fetchone() == (0,)
    run_monthly(NOV, quiet=True)
    assert warehouse_invoices(warehouse, NOV)["acme"].credits == Counter()

    # a void between a run and its close
    with psycopg.connect(warehouse) as conn:
        record_grant(
            conn,
            CreditGrant(
                id="g_more", tenant_id="acme", amount="5.00", granted_at="2026-10-01T00:00:00Z"
            ),
            "usd",
            source="test",
        )
    run_monthly(NOV, quiet=True)
    assert set(warehouse_invoices(warehouse, NOV)["acme"].credits) == {("g_more", 500)}
    with psycopg.connect(warehouse) as conn:
        void_grant(conn, "g_more", "test", source="test")
    with pytest.raises(PipelineError, match="credit grant 'g_more' would be voided"):
        finalize_month(NOV, watermark())
