"""Usage alerts and the quota events, end to end: a tenant's key sets thresholds in quantity
and in amount; events sent through the API cross them (seen after ingest), events a bulk
load stored cross another (seen by the daily schedule's run); each fires once a month, with
a `usage.threshold_crossed` event delivered to the tenant's endpoint. Quota checks past a
soft or a hard limit record `quota.exceeded` once."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from dagster import DagsterInstance
from fastapi.testclient import TestClient

from ingest.alerts import evaluate
from ingest.writer import Event, copy_events
from orchestration.dbt_vars import current_month
from sync.webhooks_out import deliver
from tests.ingest.test_subscriptions_and_reads import bearer, tenant_key
from tests.orchestration.test_dagster_runs import execute, tick
from tests.sync.test_webhooks_out import Receiver, verify

pytestmark = pytest.mark.slow


def _calls(key: str, amount: int, at: datetime) -> dict[str, Any]:
    return {
        "tenant_id": "acme",
        "metric": "api_calls",
        "amount": amount,
        "timestamp": at.isoformat(),
        "idempotency_key": key,
    }


def _fired(api: TestClient, key: str, alert_id: str, timeout: float = 60) -> dict[str, Any]:
    """The alert's firing this month, once the API's watcher has recorded it."""
    deadline = time.monotonic() + timeout
    while True:
        alerts = api.get("/v1/alerts", headers=bearer(key)).json()["alerts"]
        (alert,) = [a for a in alerts if a["alert_id"] == alert_id]
        if alert["fired"] is not None:
            return alert["fired"]  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{alert_id} did not fire: {alerts}"
        time.sleep(0.2)


def test_alerts_fire_once_a_month_whether_ingest_or_a_run_crosses_them(
    api: TestClient, catalog_loaded: str
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    month = current_month(now)
    acme = tenant_key("acme")
    with Receiver(failures=0) as receiver:
        endpoint = api.post(
            "/v1/webhook-endpoints",
            json={
                "url": receiver.url,
                "tenant_id": "acme",
                "event_types": ["usage.threshold_crossed"],
            },
        )
        assert endpoint.status_code == 201, endpoint.text

        def alert(**body: Any) -> Any:
            return api.post("/v1/alerts", json=body, headers=bearer(acme))

        # acme's plan: api_calls at 0.0004 past 100,000 included; storage graduated
        for body in (
            {"id": "calls_150k", "metric": "api_calls", "kind": "quantity", "threshold": 150000},
            {"id": "calls_40usd", "metric": "api_calls", "kind": "amount", "threshold": "40.00"},
            {"id": "storage_5usd", "metric": "storage_gb", "kind": "amount", "threshold": "5"},
        ):
            created = alert(**body)
            assert created.status_code == 201, created.text
            assert created.json()["tenant_id"] == "acme"
        again = alert(id="calls_150k", metric="api_calls", kind="quantity", threshold="150000.0")
        assert again.status_code == 201 and again.json()["alert_id"] == "calls_150k"
        for body, field, status in (
            ({"metric": "api_calls", "kind": "amount", "threshold": "1.005"}, "threshold", 422),
            ({"metric": "nope", "kind": "quantity", "threshold": 1}, "metric", 422),
            ({"metric": "api_calls", "kind": "quantity", "threshold": 0}, "threshold", 422),
            (
                {"id": "calls_150k", "metric": "api_calls", "kind": "quantity", "threshold": 1},
                "id",
                409,
            ),
        ):
            refused = alert(**body)
            assert refused.status_code == status, refused.text
            assert refused.json()["error"]["details"][0]["field"] == field
        other = alert(tenant_id="globex", metric="api_calls", kind="quantity", threshold=1)
        assert other.status_code == 403, other.text

        def send(*events: dict[str, Any]) -> None:
            response = api.post("/v1/events", json={"events": list(events)}, headers=bearer(acme))
            assert response.status_code == 200, response.text

        send(_calls("c1", 100_000, now))
        with psycopg.connect(catalog_loaded, autocommit=True) as conn:
            assert evaluate(conn, "acme", "ingest") == []  # 100,000 is below every threshold
        send(_calls("c2", 60_000, now))
        quantity = _fired(api, acme, "calls_150k")
        assert (quantity["value"], quantity["source"]) == ("160000", "ingest")
        # 60,000 past the included 100,000 cost 24.00: the amount alert waits
        send(_calls("c3", 40_000, now), _calls("c1", 100_000, now))  # c1 again: not counted
        amount = _fired(api, acme, "calls_40usd")
        assert (Decimal(amount["value"]), amount["source"]) == (Decimal(40), "ingest")

        # storage a bulk load stored (not through the API): the daily schedule's run sees it
        # (once the API's watcher is done with what it was sent, or it could see it first)
        assert api.app.state.alerts.idle()  # type: ignore[attr-defined]
        with psycopg.connect(catalog_loaded) as conn:
            copy_events(conn, [Event("acme", "storage_gb", Decimal(150), now, "s1")])
        instance = DagsterInstance.ephemeral()
        today_1am = datetime.combine(now.date(), datetime.min.time(), UTC) + timedelta(hours=1)
        for request in tick(instance, "daily_usage_0100_utc", today_1am):
            execute(instance, "daily_usage_0100_utc", request)
        storage = _fired(api, acme, "storage_5usd", timeout=1)
        # 100 GB at 0.10, 50 at 0.05
        assert (Decimal(storage["value"]), storage["source"]) == (Decimal("12.5"), "run")

        send(_calls("c4", 500_000, now))  # past every threshold again: nothing fires twice
        with psycopg.connect(catalog_loaded, autocommit=True) as conn:
            assert evaluate(conn, "acme", "run") == []
            events = conn.execute(
                """select payload ->> 'alert_id', count(*) from app.webhook_events
                   where event_type = 'usage.threshold_crossed' group by 1 order by 1"""
            ).fetchall()
        assert events == [("calls_150k", 1), ("calls_40usd", 1), ("storage_5usd", 1)]

        report = deliver()
        assert report.delivered == 3, report
        secret = endpoint.json()["secret"]
        bodies = [verify(secret, headers, body) for _, headers, body, _ in receiver.received]
    assert [(b["type"], b["data"]["alert_id"]) for b in bodies] == [
        ("usage.threshold_crossed", "calls_150k"),
        ("usage.threshold_crossed", "calls_40usd"),
        ("usage.threshold_crossed", "storage_5usd"),
    ]
    assert bodies[0]["data"]["period_start"] == str(month)
    assert bodies[0]["data"]["threshold"] == "150000"

    disabled = api.post("/v1/alerts/calls_150k/disable", headers=bearer(acme))
    assert disabled.status_code == 200 and disabled.json()["disabled_at"] is not None
    unknown = api.post("/v1/alerts/calls_150k/disable", headers=bearer(tenant_key("globex")))
    assert unknown.status_code == 404, unknown.text


def test_a_quota_exceeded_is_recorded_once_a_month(api: TestClient, catalog_loaded: str) -> None:
    # globex: starter, soft limit 200,000 api_calls; acme: pro, hard limit 5,000,000
    for tenant, amount, allowed in (
        ("globex", 150_000, True),
        ("globex", 100_000, True),  # past the soft limit: counted, with an overage
        ("globex", 1, True),
        ("acme", 6_000_000, False),  # refused by the hard limit
        ("acme", 6_000_000, False),
    ):
        checked = api.post(
            "/v1/quotas/check",
            json={"tenant_id": tenant, "metric": "api_calls", "amount": amount},
        )
        assert checked.status_code in (200, 429), checked.text
        assert checked.json()["allowed"] is allowed
    with psycopg.connect(catalog_loaded) as conn:
        events = conn.execute(
            """select tenant_id, payload ->> 'policy', payload ->> 'allowed', payload ->> 'used'
               from app.webhook_events where event_type = 'quota.exceeded' order by tenant_id"""
        ).fetchall()
    assert events == [("acme", "hard", "false", "0"), ("globex", "soft", "true", "250000")]
