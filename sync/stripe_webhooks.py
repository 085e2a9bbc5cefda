"""Stripe webhooks: verify, store once by event id, move the invoice's status.

A verified event is stored in ``app.stripe_webhook_events`` in the same transaction as the
status it implies, so an event applied once is never applied again, and an event that is
stored was applied. The invoice is found by ``metadata.billing_invoice_id`` (set by the
push), else by the Stripe invoice id the push recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
import stripe
from psycopg.types.json import Jsonb

from warehouse.outbox import record_event

# Stripe's five-minute window: an older signature is a replay.
SIGNATURE_TOLERANCE_SECONDS = 300

STATUS_BY_EVENT = {
    "invoice.paid": "paid",
    "invoice.payment_failed": "payment_failed",
    "invoice.voided": "void",
    # our statuses have no `uncollectible`: the money is not coming, as after a failed payment
    "invoice.marked_uncollectible": "payment_failed",
}
WEBHOOK_SOURCE = "stripe_webhook"


class WebhookRejected(ValueError):
    """A forged, stale or malformed webhook: answer 400 and store nothing."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class WebhookOutcome:
    event_id: str
    event_type: str
    duplicate: bool
    invoice_id: str | None
    status: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "received": True,
            "event_id": self.event_id,
            "type": self.event_type,
            "duplicate": self.duplicate,
            "invoice_id": self.invoice_id,
            "status": self.status,
        }


# the payment outcomes the customers' systems hear of (warehouse.outbox)
OUTBOX_STATUSES = ("paid", "payment_failed")


def verify(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """The event in a signed payload, or ``WebhookRejected``."""
    if not signature:
        raise WebhookRejected("missing_signature", "the Stripe-Signature header is missing")
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8"), signature, secret, SIGNATURE_TOLERANCE_SECONDS
        )
    except UnicodeDecodeError:
        raise WebhookRejected("malformed_event", "the body is not UTF-8") from None
    except stripe.SignatureVerificationError as exc:
        raise WebhookRejected("bad_signature", f"Stripe-Signature: {exc.user_message}") from None
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise WebhookRejected("malformed_event", f"the body is not JSON: {exc}") from None
    problems = []
    if not isinstance(event, dict):
        raise WebhookRejected("malformed_event", "the body is not a JSON object")
    for name, kind in (("id", str), ("type", str), ("created", int)):
        if not isinstance(event.get(name), kind) or event.get(name) == "":
            problems.append(f"{name}: must be a {kind.__name__}")
    obj = (event.get("data") or {}).get("object") if isinstance(event.get("data"), dict) else None
    if not isinstance(obj, dict):
        problems.append("data.object: must be an object")
    if problems:
        raise WebhookRejected("malformed_event", "; ".join(problems))
    return event


def apply_event(conn: psycopg.Connection, event: dict[str, Any]) -> WebhookOutcome:
    """Store a verified event once and apply the status it implies; idempotent by event id."""
    obj = event["data"]["object"]
    status = STATUS_BY_EVENT.get(event["type"])
    with conn.transaction():
        invoice_id = _our_invoice(conn, obj) if status else None
        stored = conn.execute(
            """insert into app.stripe_webhook_events
                   (event_id, event_type, created_at, payload, invoice_id)
               values (%s, %s, to_timestamp(%s), %s, %s)
               on conflict (event_id) do nothing
               returning event_id""",
            (event["id"], event["type"], event["created"], Jsonb(event), invoice_id),
        ).fetchone()
        if stored is None:
            return WebhookOutcome(event["id"], event["type"], True, invoice_id, None)
        if invoice_id is None or status is None:
            return WebhookOutcome(event["id"], event["type"], False, invoice_id, None)
        conn.execute(
            """insert into app.invoice_status_events
                   (invoice_id, status, provider_invoice_id, source, occurred_at)
               values (%s, %s, %s, %s, to_timestamp(%s))""",
            (invoice_id, status, obj.get("id"), WEBHOOK_SOURCE, event["created"]),
        )
        if status in OUTBOX_STATUSES:
            tenant = conn.execute(
                "select tenant_id from app.finalized_invoices where invoice_id = %s",
                (invoice_id,),
            ).fetchone()
            assert tenant is not None
            record_event(
                conn,
                f"invoice.{status}",
                tenant[0],
                {"invoice_id": invoice_id, "tenant_id": tenant[0], "status": status},
                key=event["id"],
            )
    return WebhookOutcome(event["id"], event["type"], False, invoice_id, status)


def _our_invoice(conn: psycopg.Connection, obj: dict[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    ours = metadata.get("billing_invoice_id") if isinstance(metadata, dict) else None
    row = conn.execute(
        """select invoice_id from app.finalized_invoices where invoice_id = %s
           union all
           select invoice_id from app.invoice_status_events where provider_invoice_id = %s
           limit 1""",
        (ours if isinstance(ours, str) else None, str(obj.get("id") or "")),
    ).fetchone()
    return str(row[0]) if row else None
