"""Writes validated usage events into ``raw.events`` with COPY, never row at a time."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

COLUMNS = ("tenant_id", "metric", "amount", "event_ts", "idempotency_key", "metadata")


@dataclass(frozen=True, slots=True)
class Event:
    """One validated usage event, as it is stored."""

    tenant_id: str
    metric: str
    amount: Decimal
    timestamp: datetime
    idempotency_key: str
    metadata: dict[str, Any] | None = None


def copy_rows(conn: psycopg.Connection, rows: Iterable[tuple[object, ...]]) -> int:
    """COPY rows in ``COLUMNS`` order into raw.events, in the current transaction."""
    count = 0
    with (
        conn.cursor() as cur,
        cur.copy(f"copy raw.events ({', '.join(COLUMNS)}) from stdin") as copy,
    ):
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def copy_events(conn: psycopg.Connection, events: Iterable[Event]) -> int:
    """COPY ``events`` into raw.events in the connection's current transaction.

    The caller commits: an event counts as received only once its transaction is committed.
    """
    return copy_rows(
        conn,
        (
            (
                event.tenant_id,
                event.metric,
                event.amount,
                event.timestamp,
                event.idempotency_key,
                None if event.metadata is None else json.dumps(event.metadata),
            )
            for event in events
        ),
    )
