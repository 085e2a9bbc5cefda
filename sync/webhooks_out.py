"""Deliver the outbox's webhooks (warehouse.outbox) to the endpoints the admin registered.

At least once, in order per endpoint and tenant: a tenant's next event waits until the one
before it is delivered. Each delivery is a POST of the event's JSON with

    Billing-Webhook-Id:        the event id (the same on every attempt: a replay says so)
    Billing-Webhook-Timestamp: the attempt's Unix time
    Billing-Webhook-Signature: v1=HEX, HMAC-SHA256 with the endpoint's secret over
                               "{timestamp}." followed by the body

A 2xx answer delivers it; anything else (or no answer in time) is retried after a backoff
that doubles from 10 seconds up to an hour. Every attempt is logged in app.webhook_attempts.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from warehouse.db import connect
from warehouse.outbox import payload_of
from warehouse.settings import Settings, get_settings

DELIVER_LOCK = 7_361_002  # pg_advisory_lock id: one delivery pass at a time
BACKOFF_FIRST = timedelta(seconds=10)
BACKOFF_MAX = timedelta(hours=1)
TIMEOUT_SECONDS = 10.0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for a body sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def backoff(attempts: int) -> timedelta:
    """How long after its ``attempts``-th failure a delivery is tried again."""
    return min(BACKOFF_FIRST * 2 ** max(attempts - 1, 0), BACKOFF_MAX)


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    waiting: int = 0

    def summary(self) -> str:
        return (
            f"webhooks: {self.delivered} delivered, {self.failed} failed (retried later), "
            f"{self.waiting} waiting"
        )


def deliver(
    settings: Settings | None = None,
    *,
    now: datetime | None = None,
    client: httpx.Client | None = None,
) -> DeliveryReport:
    """One pass: every delivery that is due, oldest first per endpoint and tenant."""
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    report = DeliveryReport()
    own = client is None
    client = client or httpx.Client(timeout=TIMEOUT_SECONDS)
    try:
        with connect(settings, autocommit=True) as conn:
            if not conn.execute("select pg_try_advisory_lock(%s)", (DELIVER_LOCK,)).fetchone()[0]:  # type: ignore[index]
                return report
            try:
                rows = conn.execute(
                    """select d.endpoint_id, e.url, e.secret, d.tenant_id, d.event_seq,
                              d.attempts, d.next_attempt_at, w.event_id, w.event_type,
                              w.payload, w.created_at
                       from app.webhook_deliveries d
                       join app.webhook_endpoints e on e.endpoint_id = d.endpoint_id
                       join app.webhook_events w on w.event_seq = d.event_seq
                       where d.delivered_at is null and e.disabled_at is null
                       order by d.endpoint_id, d.tenant_id, d.event_seq"""
                ).fetchall()
                blocked: set[tuple[str, str]] = set()
                for (endpoint, url, secret, tenant, seq, attempts, due, event_id, kind,
                     data, created) in rows:  # fmt: skip
                    if (endpoint, tenant) in blocked or due > now:
                        blocked.add((endpoint, tenant))
                        report.waiting += 1
                        continue
                    body = payload_of(event_id, kind, int(created.timestamp()), data)
                    status, error, took = _post(client, url, secret, event_id, body, now)
                    conn.execute(
                        """insert into app.webhook_attempts
                               (endpoint_id, event_seq, attempted_at, status_code, error,
                                duration_ms)
                           values (%s, %s, %s, %s, %s, %s)""",
                        (endpoint, seq, now, status, error, took),
                    )
                    if status is not None and 200 <= status < 300:
                        conn.execute(
                            """update app.webhook_deliveries
                               set attempts = attempts + 1, delivered_at = %s
                               where endpoint_id = %s and event_seq = %s""",
                            (now, endpoint, seq),
                        )
                        report.delivered += 1
                    else:
                        conn.execute(
                            """update app.webhook_deliveries
                               set attempts = attempts + 1, next_attempt_at = %s
                               where endpoint_id = %s and event_seq = %s""",
                            (now + backoff(attempts + 1), endpoint, seq),
                        )
                        blocked.add((endpoint, tenant))
                        report.failed += 1
            finally:
                conn.execute("select pg_advisory_unlock(%s)", (DELIVER_LOCK,))
    finally:
        if own:
            client.close()
    return report


def _post(
    client: httpx.Client, url: str, secret: str, event_id: str, body: bytes, now: datetime
) -> tuple[int | None, str | None, int]:
    timestamp = int(now.timestamp())
    started = time.monotonic()
    try:
        response = client.post(
            url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "Billing-Webhook-Id": event_id,
                "Billing-Webhook-Timestamp": str(timestamp),
                "Billing-Webhook-Signature": sign(secret, timestamp, body),
            },
        )
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500], _ms(started)
    error = None if response.is_success else response.text[:500]
    return response.status_code, error, _ms(started)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
