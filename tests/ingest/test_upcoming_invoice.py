"""GET /v1/invoices/upcoming: the current month's invoice priced now, by the monthly run's
own models (the `preview` views), equal line for line to `billing run monthly` on the same
data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner
from fastapi.testclient import TestClient

from billing.cli import main
from ingest.upcoming import current_month
from orchestration.pipeline import run_daily
from tests.ingest.test_subscriptions_and_reads import bearer, tenant_key, with_demo


def _event(tenant: str, key: str, metric: str, amount: Any, at: datetime, **meta: Any) -> dict:
    body = {
        "tenant_id": tenant,
        "metric": metric,
        "amount": amount,
        "timestamp": at.isoformat(),
        "idempotency_key": key,
    }
    return body | ({"metadata": meta} if meta else {})


def test_upcoming_invoice_equals_the_monthly_run_line_for_line(
    api: TestClient, catalog_loaded: str, tmp_path: Path
) -> None:
    with_demo(tmp_path, tenants=[{"id": "hooli", "name": "Hooli", "currency": "usd"}])
    now = datetime.now(UTC).replace(microsecond=0)
    month = current_month(now)
    month_start = datetime.combine(month, datetime.min.time(), UTC)
    acme, globex = tenant_key("acme"), tenant_key("globex")

    def send(key: str, events: list[dict[str, Any]]) -> None:
        response = api.post("/v1/events", json={"events": events}, headers=bearer(key))
        assert response.status_code == 200, response.text

    # usage a daily run stores, then usage received after it (pending), a retry of a stored
    # event (not counted twice), and a plan change in the month (two segments, prorated)
    send(
        acme,
        [
            _event("acme", "a1", "api_calls", 12_000, month_start),
            _event("acme", "s1", "storage_gb", 120, month_start + timedelta(hours=1)),
            _event("acme", "u1", "active_users", 1, month_start, user_id="x"),
        ],
    )
    send(globex, [_event("globex", "g1", "api_calls", 3_000, month_start)])
    run_daily(month, now.date(), quiet=True)
    send(
        acme,
        [
            _event("acme", "a1", "api_calls", 12_000, month_start),
            _event("acme", "a2", "api_calls", "2500.5", now),
            _event("acme", "u2", "active_users", 1, now, user_id="y"),
            _event("acme", "t1", "seats", 12, now),
        ],
    )
    send(
        globex,
        [_event("globex", "g2", "builds", 1, now), _event("globex", "g3", "api_calls", 7, now)],
    )
    changed = api.post(
        "/v1/subscriptions/sub_globex/change-plan",
        json={"plan": "pro", "at": (month_start + timedelta(days=1)).isoformat()},
    )
    assert changed.status_code == 200, changed.text

    upcoming = {}
    for tenant, key in (("acme", acme), ("globex", globex)):
        response = api.get("/v1/invoices/upcoming", headers=bearer(key))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["tenant_id"] == tenant
        (invoice,) = body["invoices"]
        assert invoice["status"] == "draft"
        assert invoice["period_start"].startswith(str(month))
        upcoming[tenant] = invoice
    # the events received a moment ago are priced
    acme_calls = [
        line
        for line in upcoming["acme"]["lines"]
        if line["line_type"] == "usage" and line["metric"] == "api_calls"
    ]
    assert [line["quantity"] for line in acme_calls] == ["14500.5"]
    assert {line["plan"] for line in upcoming["globex"]["lines"] if line["plan"]} == {
        "starter",
        "pro",
    }
    # the admin names the tenant, and reads the same
    admin = api.get("/v1/invoices/upcoming", params={"tenant_id": "acme"})
    assert admin.status_code == 200, admin.text
    assert admin.json()["invoices"] == [upcoming["acme"]]

    # the monthly run, as the CLI runs it, on the same data
    ran = CliRunner().invoke(main, ["run", "monthly", "--month", f"{month:%Y-%m}"])
    assert ran.exit_code == 0, ran.output
    for tenant in ("acme", "globex"):
        response = api.get("/v1/invoices", params={"tenant_id": tenant, "month": f"{month:%Y-%m}"})
        assert response.json()["invoices"] == [upcoming[tenant]]
    with psycopg.connect(catalog_loaded) as conn:
        drafts = conn.execute(
            """select count(*) from marts.fct_invoice_lines
               where tenant_id in ('acme', 'globex') and period_start = %s""",
            (month_start,),
        ).fetchone()
    assert drafts is not None
    assert drafts[0] == len(upcoming["acme"]["lines"]) + len(upcoming["globex"]["lines"]) > 4


def test_upcoming_invoice_is_the_callers_own(api: TestClient, tmp_path: Path) -> None:
    with_demo(tmp_path, tenants=[{"id": "hooli", "name": "Hooli", "currency": "usd"}])
    acme = tenant_key("acme")
    other = api.get("/v1/invoices/upcoming", params={"tenant_id": "globex"}, headers=bearer(acme))
    assert other.status_code == 403, other.text
    unnamed = api.get("/v1/invoices/upcoming")
    assert unnamed.status_code == 422, unnamed.text
    assert unnamed.json()["error"]["details"][0]["field"] == "tenant_id"
    nothing = api.get("/v1/invoices/upcoming", headers=bearer(tenant_key("hooli")))
    assert nothing.status_code == 404, nothing.text
    assert "hooli" in nothing.json()["error"]["message"]
