"""POST /v1/webhooks/stripe: verified, stored once, statuses in fct_invoices."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from ingest.app import create_app
from orchestration.pipeline import run_monthly
from sync.stripe_push import push_invoices
from tests.fake_stripe import FakeStripeServer, sign_webhook
from tests.sync.conftest import INVOICES, push_settings
from warehouse.settings import Settings

SECRET = "whsec_test_secret"


@pytest.fixture
def pushed(finalized: str, stripe_server: FakeStripeServer) -> dict[str, dict[str, Any]]:
    """Invoices finalized, the marts built, pushed: our invoice id -> the Stripe invoice."""
    run_monthly(date(2026, 10, 1), quiet=True)
    report = push_invoices(settings=push_settings(finalized, stripe_server.url))
    assert report.count("pushed") == len(INVOICES)
    return {i: stripe_server.fake.invoice_for(i)[0] for i in INVOICES}


@pytest.fixture
def client(finalized: str) -> Iterator[TestClient]:
    settings = Settings(database_url=finalized, stripe_webhook_secret=SECRET)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def event(event_id: str, kind: str, invoice: dict[str, Any], created: int | None = None) -> bytes:
    body = {
        "id": event_id,
        "object": "event",
        "type": kind,
        "created": created or int(time.time()),
        "data": {"object": invoice},
    }
    return json.dumps(body).encode()


def post(client: TestClient, payload: bytes, signature: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    headers["Stripe-Signature"] = signature or sign_webhook(payload, SECRET)
    return client.post("/v1/webhooks/stripe", content=payload, headers=headers)


def statuses(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("select invoice_id, status from marts.fct_invoices").fetchall())


def stored(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """select (select count(*) from app.stripe_webhook_events),
                      (select count(*) from app.invoice_status_events)"""
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_payment_events_move_the_status_once(
    finalized: str, pushed: dict[str, dict[str, Any]], client: TestClient
) -> None:
    assert set(statuses(finalized).values()) == {"pending"}
    paid = event("evt_1", "invoice.paid", pushed["inv_acme_09"])
    response = post(client, paid)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "paid"
    assert statuses(finalized)["inv_acme_09"] == "paid"

    before = stored(finalized)
    again = post(client, paid)  # Stripe delivers at least once: the second is a no-op
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert stored(finalized) == before

    post(client, event("evt_2", "invoice.payment_failed", pushed["inv_acme_10"]))
    post(client, event("evt_3", "invoice.voided", pushed["inv_initech_10"]))
    assert statuses(finalized) == {
        "inv_acme_09": "paid",
        "inv_acme_10": "payment_failed",
        "inv_initech_10": "void",
    }
    post(client, event("evt_4", "invoice.paid", pushed["inv_acme_10"]))
    post(client, event("evt_5", "invoice.marked_uncollectible", pushed["inv_acme_09"]))
    assert statuses(finalized)["inv_acme_10"] == "paid"
    assert statuses(finalized)["inv_acme_09"] == "payment_failed"


def test_late_delivery_of_an_older_event_does_not_win(
    finalized: str, pushed: dict[str, dict[str, Any]], client: TestClient
) -> None:
    now = int(time.time())
    post(client, event("evt_new", "invoice.paid", pushed["inv_acme_09"], created=now))
    post(client, event("evt_old", "invoice.payment_failed", pushed["inv_acme_09"], now - 60))
    assert statuses(finalized)["inv_acme_09"] == "paid"


def test_bad_webhooks_get_400_and_change_nothing(
    finalized: str, pushed: dict[str, dict[str, Any]], client: TestClient
) -> None:
    before, status_before = stored(finalized), statuses(finalized)
    paid = event("evt_bad", "invoice.paid", pushed["inv_acme_09"])
    stale = int(time.time()) - 600
    cases = {
        "forged": post(client, paid, sign_webhook(paid, "whsec_someone_else")),
        "tampered": post(client, paid.replace(b"evt_bad", b"evt_bae"), sign_webhook(paid, SECRET)),
        "replayed late": post(client, paid, sign_webhook(paid, SECRET, timestamp=stale)),
        "no signature": client.post("/v1/webhooks/stripe", content=paid),
        "garbage signature": post(client, paid, "nonsense"),
        "not json": post(client, b"{not json"),
        "no id": post(client, json.dumps({"type": "invoice.paid", "created": 1}).encode()),
        "no object": post(
            client, json.dumps({"id": "evt_x", "type": "invoice.paid", "created": 1}).encode()
        ),
    }
    for name, response in cases.items():
        assert response.status_code == 400, (name, response.text)
        assert response.json()["error"]["message"], name
    assert cases["no object"].json()["error"]["message"] == "data.object: must be an object"
    assert stored(finalized) == before
    assert statuses(finalized) == status_before


def test_unknown_event_types_are_acknowledged_and_ignored(
    finalized: str, pushed: dict[str, dict[str, Any]], client: TestClient
) -> None:
    before = statuses(finalized)
    response = post(client, event("evt_u", "invoice.upcoming", pushed["inv_acme_09"]))
    assert response.status_code == 200
    assert response.json()["status"] is None
    assert statuses(finalized) == before


def test_without_a_webhook_secret_nothing_is_accepted(finalized: str) -> None:
    with TestClient(create_app(Settings(database_url=finalized))) as unconfigured:
        payload = event("evt_1", "invoice.paid", {"id": "in_1"})
        response = post(unconfigured, payload)
    assert response.status_code == 503
    assert "BILLING_STRIPE_WEBHOOK_SECRET" in response.json()["error"]["message"]
