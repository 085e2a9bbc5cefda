"""The outbox of outbound webhooks: an event is recorded in the transaction that makes it
happen (a close, a payment status), with a delivery for each endpoint that receives it;
sync.webhooks_out delivers them, at least once, in order per tenant."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, get_args

import psycopg
from psycopg.types.json import Jsonb

EventType = Literal[
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_failed",
    "usage.threshold_crossed",
    "quota.exceeded",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


def record_event(
    conn: psycopg.Connection, event_type: str, tenant_id: str, data: dict[str, Any], key: str
) -> bool:
    """Record an event once (``key`` names what happened: the same key again is the same
    event) with a delivery per endpoint receiving it; return whether it is new."""
    assert event_type in EVENT_TYPES, event_type
    digest = hashlib.sha256(f"{event_type}|{key}".encode()).hexdigest()
    event_id = f"evt_{digest[:24]}"
    row = conn.execute(
        """insert into app.webhook_events (event_id, event_type, tenant_id, payload)
           values (%(id)s, %(type)s, %(tenant)s, %(payload)s)
           on conflict (event_id) do nothing
           returning event_seq""",
        {
            "id": event_id,
            "type": event_type,
            "tenant": tenant_id,
            "payload": Jsonb(data),
        },
    ).fetchone()
    if row is None:
        return False
    conn.execute(
        """insert into app.webhook_deliveries (endpoint_id, event_seq, tenant_id)
           select endpoint_id, %(seq)s, %(tenant)s from app.webhook_endpoints
           where disabled_at is null
             and (tenant_id is null or tenant_id = %(tenant)s)
             and (event_types is null or event_types ? %(type)s)""",
        {"seq": row[0], "tenant": tenant_id, "type": event_type},
    )
    return True


def payload_of(event_id: str, event_type: str, created: int, data: dict[str, Any]) -> bytes:
    """The body every delivery of an event carries, byte for byte."""
    body = {"id": event_id, "type": event_type, "created": created, "data": data}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()
