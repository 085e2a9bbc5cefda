"""Subscription history: starts, plan changes and cancellations, appended to
``raw.subscription_events`` where the dbt engine reads them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import psycopg

Action = Literal["start", "change_plan", "cancel"]


def record_subscription_event(
    conn: psycopg.Connection,
    subscription_id: str,
    tenant_id: str,
    action: Action,
    effective_at: datetime,
    *,
    plan_key: str | None = None,
    at_period_end: bool = False,
    source: str = "api",
) -> int:
    """Append one change to the history; return its sequence number."""
    row = conn.execute(
        """insert into raw.subscription_events
               (subscription_id, tenant_id, action, plan_key, effective_at, at_period_end,
                source)
           values (%s, %s, %s, %s, %s, %s, %s)
           returning event_seq""",
        (subscription_id, tenant_id, action, plan_key, effective_at, at_period_end, source),
    ).fetchone()
    assert row is not None
    return int(row[0])
