"""Trials (plan `trial_days`, `trial_bills_usage`) through the API and the run sequence: a
tenant starting a trial with its own key, a trial ending mid-month, and a cancellation in a
trial recorded after a month of it was finalized."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from orchestration.pipeline import run_monthly
from tests.ingest.test_subscriptions_and_reads import bearer, tenant_key, with_demo

TRIAL_PLANS = [
    {
        # 14 days free, usage included
        "key": "trial_free",
        "name": "Trial Free",
        "interval": "month",
        "currency": "usd",
        "base_price": "31.00",
        "trial_days": 14,
        "charges": [{"metric": "api_calls", "model": "per_unit", "unit_price": "0.01"}],
    },
    {
        # 10 days without a base fee, usage billed
        "key": "trial_usage",
        "name": "Trial Usage",
        "interval": "month",
        "currency": "usd",
        "base_price": "31.00",
        "trial_days": 10,
        "trial_bills_usage": True,
        "charges": [{"metric": "api_calls", "model": "per_unit", "unit_price": "0.01"}],
    },
    {
        "key": "long_trial",
        "name": "Long Trial",
        "interval": "month",
        "currency": "usd",
        "base_price": "31.00",
        "trial_days": 30,
        "trial_bills_usage": True,
        "charges": [{"metric": "api_calls", "model": "per_unit", "unit_price": "0.01"}],
    },
]
TENANTS = [
    {"id": tenant, "name": tenant.title(), "currency": "usd"}
    for tenant in ("vandelay", "hooli", "pied_piper")
]


def event(tenant: str, key: str, amount: int, at: datetime) -> dict[str, Any]:
    return {
        "tenant_id": tenant,
        "metric": "api_calls",
        "amount": amount,
        "timestamp": at.isoformat(),
        "idempotency_key": key,
    }


def lines(url: str, tenant: str, month: str) -> list[tuple[str, int, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """select line_type, amount_minor, description from marts.fct_invoice_lines
               where tenant_id = %s and period_start = %s::date::timestamptz
               order by line_type, service_start""",
            (tenant, month),
        ).fetchall()
    return [(kind, int(amount), description) for kind, amount, description in rows]


def test_a_tenant_that_cancels_its_own_trial_is_billed_nothing(
    api: TestClient, catalog_loaded: str, tmp_path: Path
) -> None:
    with_demo(tmp_path, plans=TRIAL_PLANS, tenants=TENANTS)
    key = bearer(tenant_key("pied_piper"))
    started = api.post(
        "/v1/subscriptions", json={"tenant_id": "pied_piper", "plan": "trial_usage"}, headers=key
    )
    assert started.status_code == 201, started.text
    body = started.json()
    started_at = datetime.fromisoformat(body["history"][0]["effective_at"])
    assert datetime.fromisoformat(body["trial_ends_at"]) == started_at + timedelta(days=10)
    now = datetime.now(UTC)
    sent = api.post(
        "/v1/events", json={"events": [event("pied_piper", "g1", 500, now)]}, headers=key
    )
    assert sent.status_code == 200, sent.text
    cancelled = api.post(
        f"/v1/subscriptions/{started.json()['id']}/cancel",
        json={"at_period_end": False},
        headers=key,
    )
    assert cancelled.status_code == 200, cancelled.text
    month = now.date().replace(day=1)
    run_monthly(month, quiet=True)
    # the trial bills its usage, but a cancellation in the trial bills nothing at all
    assert lines(catalog_loaded, "pied_piper", month.isoformat()) == []
    with psycopg.connect(catalog_loaded) as conn:
        invoices = conn.execute(
            "select count(*) from marts.fct_invoices where tenant_id = 'pied_piper'"
        ).fetchone()
        plan = conn.execute(
            "select trial_days, trial_bills_usage from marts.dim_plans "
            "where plan_key = 'trial_usage'"
        ).fetchone()
    assert invoices == (0,)
    assert plan == (10, True)


@pytest.mark.minutes(0.2)
def test_trials_end_mid_month_and_a_cancellation_in_one_reaches_a_closed_month(
    api: TestClient, catalog_loaded: str, tmp_path: Path
) -> None:
    with_demo(tmp_path, plans=TRIAL_PLANS, tenants=TENANTS)
    sep_25 = datetime(2026, 9, 25, tzinfo=UTC)
    oct_20 = datetime(2026, 10, 20, tzinfo=UTC)
    starts = [("vandelay", "trial_usage", sep_25), ("hooli", "long_trial", oct_20)]
    ids = {}
    for tenant, plan, at in starts:
        created = api.post(
            "/v1/subscriptions", json={"tenant_id": tenant, "plan": plan, "start": at.isoformat()}
        )
        assert created.status_code == 201, created.text
        ids[tenant] = created.json()["id"]
    sent = api.post(
        "/v1/events",
        json={
            "events": [
                event("vandelay", "i1", 100, sep_25 + timedelta(days=1)),  # in the trial
                event("vandelay", "i2", 200, datetime(2026, 10, 10, tzinfo=UTC)),  # after it
                event("hooli", "h1", 300, oct_20 + timedelta(days=2)),  # in the trial
            ]
        },
    )
    assert sent.status_code == 200, sent.text

    run_monthly(date(2026, 9, 1), finalize=True, quiet=True)
    # September: the trial's usage, no base fee
    assert lines(catalog_loaded, "vandelay", "2026-09-01") == [
        ("usage", 100, "Trial Usage: api_calls (per_unit) during the trial")
    ]
    run_monthly(date(2026, 10, 1), finalize=True, quiet=True)
    # October: the trial ended on Oct 5, the base fee for 27 of 31 days (each segment
    # has its usage line, as a plan change's)
    assert lines(catalog_loaded, "vandelay", "2026-10-01") == [
        ("base_fee", 2700, "Trial Usage: base fee (prorated)"),
        ("usage", 0, "Trial Usage: api_calls (per_unit) during the trial"),
        ("usage", 200, "Trial Usage: api_calls (per_unit)"),
    ]
    assert lines(catalog_loaded, "hooli", "2026-10-01") == [
        ("usage", 300, "Long Trial: api_calls (per_unit) during the trial")
    ]

    # hooli cancels on Nov 5, in its trial (recorded after October's close): October's
    # trial usage is given back on November's invoice, and November bills nothing else
    cancelled = api.post(
        f"/v1/subscriptions/{ids['hooli']}/cancel",
        json={"at_period_end": False, "at": "2026-11-05T00:00:00Z"},
    )
    assert cancelled.status_code == 200, cancelled.text
    run_monthly(date(2026, 11, 1), quiet=True)
    november = lines(catalog_loaded, "hooli", "2026-11-01")
    assert [(kind, amount) for kind, amount, _ in november] == [("adjustment", -300)]
    assert lines(catalog_loaded, "hooli", "2026-10-01")[0][1] == 300  # finalized, unchanged
