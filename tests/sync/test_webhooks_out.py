"""Outbound webhooks end to end: the admin registers endpoints, a month's close and Stripe's
payment webhooks record events in the outbox, and delivery passes send them to a receiver
that fails for a while and then recovers: each event arrives, signed, in order per tenant,
its retries carrying the same event id, and the delivery log says what happened."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from ingest.app import create_app
from ingest.writer import Event, copy_events
from orchestration.pipeline import run_monthly
from sync.webhooks_out import deliver
from tests.e2e.test_commitments import CATALOG
from tests.engine_helpers import apply_catalog
from tests.fake_stripe import sign_webhook
from tests.helpers import serve_in_thread
from tests.ingest.conftest import ADMIN_KEY
from warehouse.settings import Settings, get_settings

pytestmark = pytest.mark.slow
STRIPE_SECRET = "whsec_outbound_test"


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> dict:  # type: ignore[type-arg]
    """What a customer's app does with a delivery (README, "Outbound webhooks")."""
    timestamp = headers["Billing-Webhook-Timestamp"]
    signed = timestamp.encode() + b"." + body
    expected = "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, headers["Billing-Webhook-Signature"]):
        raise ValueError("bad signature")
    if abs(time.time() - int(timestamp)) > tolerance:
        raise ValueError("too old")
    return json.loads(body)  # type: ignore[no-any-return]


class Receiver:
    """An HTTP receiver that answers 500 to its first ``failures`` requests, then 200."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[str, dict[str, str], bytes, int]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if len(outer.received) < outer.failures else 200
                outer.received.append((self.path, dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Receiver:
        serve_in_thread(self.server)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(failures=3) as running:
        yield running


def test_deliveries_retry_until_the_receiver_recovers_in_order_per_tenant(
    warehouse: str, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BILLING_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("BILLING_STRIPE_WEBHOOK_SECRET", STRIPE_SECRET)
    get_settings.cache_clear()
    doc = {
        **CATALOG,
        "tenants": [*CATALOG["tenants"], {"id": "beta", "name": "Beta", "currency": "usd"}],
        "subscriptions": [
            *CATALOG["subscriptions"],
            {
                "id": "s_beta",
                "tenant_id": "beta",
                "plan": "committed",
                "start": "2026-10-01T00:00:00Z",
            },
        ],
    }
    apply_catalog(doc, tmp_path)
    with psycopg.connect(warehouse) as conn:
        copy_events(
            conn,
            [Event("acme", "api_calls", Decimal(100), datetime(2026, 10, 5, tzinfo=UTC), "a")],
        )
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with TestClient(create_app(), headers=admin) as api:
        every = api.post("/v1/webhook-endpoints", json={"url": f"{receiver.url}/all"})
        assert every.status_code == 201, every.text
        paid_only = api.post(
            "/v1/webhook-endpoints",
            json={"url": f"{receiver.url}/paid", "event_types": ["invoice.paid"]},
        )
        assert paid_only.status_code == 201, paid_only.text
        bad = api.post("/v1/webhook-endpoints", json={"url": "ftp://x", "event_types": ["nope"]})
        assert bad.status_code == 422
        listed = api.get("/v1/webhook-endpoints").json()["endpoints"]
        assert len(listed) == 2 and all("secret" not in e for e in listed)
    secrets = {"/all": every.json()["secret"], "/paid": paid_only.json()["secret"]}

    run_monthly(date(2026, 10, 1), finalize=True, quiet=True)  # two invoice.finalized
    now = datetime.now(UTC)
    first = deliver(now=now)
    assert (first.delivered, first.failed) == (0, 2)  # each tenant's first try fails
    assert deliver(now=now + timedelta(seconds=5)).waiting == 2  # backing off
    third = deliver(now=now + timedelta(seconds=11))
    assert (third.delivered, third.failed) == (1, 1)  # the third failure, then recovered

    # a payment fails, then succeeds: Stripe's webhooks record two more events for acme,
    # which wait behind acme's undelivered invoice.finalized on the endpoint for all
    with psycopg.connect(warehouse) as conn:
        (invoice_id,) = conn.execute(
            "select invoice_id from app.finalized_invoices where tenant_id = 'acme'"
        ).fetchone()
    with TestClient(
        create_app(Settings(database_url=warehouse, stripe_webhook_secret=STRIPE_SECRET))
    ) as api:  # type: ignore[arg-type]
        for event_id, kind in (("evt_s1", "invoice.payment_failed"), ("evt_s2", "invoice.paid")):
            body = json.dumps(
                {
                    "id": event_id,
                    "type": kind,
                    "created": int(time.time()),
                    "data": {
                        "object": {"id": "in_1", "metadata": {"billing_invoice_id": invoice_id}}
                    },
                }
            ).encode()
            for _ in range(2):  # Stripe retries: one event still
                sent = api.post(
                    "/v1/webhooks/stripe",
                    content=body,
                    headers={"Stripe-Signature": sign_webhook(body, STRIPE_SECRET)},
                )
                assert sent.status_code == 200, sent.text
    later = now + timedelta(seconds=40)
    last = deliver(now=later)
    assert (last.delivered, last.failed, last.waiting) == (4, 0, 0)
    assert deliver(now=later + timedelta(hours=2)).delivered == 0  # nothing twice

    # every request was signed; retries carried the same event id; once delivered, an
    # event was not sent again; each endpoint saw a tenant's events in the order they happened
    seen: dict[str, list[tuple[str, str, str]]] = {"/all": [], "/paid": []}
    for path, headers, body, status in receiver.received:
        event = verify(secrets[path], headers, body)
        assert event["id"] == headers["Billing-Webhook-Id"]
        seen[path].append((event["data"]["tenant_id"], event["type"], event["id"]))
        if status == 200:
            assert (
                sum(
                    1
                    for p, h, _, s in receiver.received
                    if p == path and s == 200 and h["Billing-Webhook-Id"] == event["id"]
                )
                == 1
            )
    acme_all = [(kind, event_id) for tenant, kind, event_id in seen["/all"] if tenant == "acme"]
    kinds = [kind for kind, _ in acme_all]
    assert kinds[-3:] == ["invoice.finalized", "invoice.payment_failed", "invoice.paid"]
    assert len({event_id for kind, event_id in acme_all if kind == "invoice.finalized"}) == 1
    assert [kind for _, kind, _ in seen["/paid"]] == ["invoice.paid"]

    with TestClient(create_app(), headers=admin) as api:
        log = api.get(f"/v1/webhook-endpoints/{every.json()['endpoint_id']}/deliveries").json()
        assert (
            api.post(f"/v1/webhook-endpoints/{every.json()['endpoint_id']}/disable").status_code
            == 200
        )
    finalized = [
        d
        for d in log["deliveries"]
        if d["event_type"] == "invoice.finalized" and d["tenant_id"] == "acme"
    ]
    assert finalized[0]["attempts"] == 3 and finalized[0]["delivered_at"] is not None
    assert finalized[0]["last_outcome"] == "200"
