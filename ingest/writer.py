"""Writes validated usage events into ``raw.events`` with COPY, never row at a time."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

COLUMNS = ("tenant_id", "metric", "amount", "event_ts", "idempotency_key", "metadata")
# A row as COPY's text format takes it, in COLUMNS order: each field's text, escaped
# (copy_text), None for NULL. PostgreSQL parses the values (a decimal's text, an instant's
# with its offset): psycopg formatting each value of each row cost ingest about as much
# CPU as validating the events.
Row = tuple[str, str, str, str, str, str | None]


@dataclass(frozen=True, slots=True)
class Event:
    """One validated usage event, as it is stored."""

    tenant_id: str
    metric: str
    amount: Decimal
    timestamp: datetime
    idempotency_key: str
    metadata: dict[str, Any] | None = None


# COPY's text format: a backslash, tab, newline or carriage return in a value is escaped
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
NULL = "\\N"


def copy_text(value: str) -> str:
    """``value`` as a field of COPY's text format."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_ESCAPES)
    return value


# PostgreSQL reads UTC offsets under 16 hours; RFC 3339's grammar allows up to 23:59
MAX_OFFSET = timedelta(hours=16)


def instant_text(moment: datetime) -> str:
    """``moment`` as text PostgreSQL reads as the same instant: with its own offset, or in
    UTC when PostgreSQL would not read that one (OverflowError if UTC cannot hold it)."""
    offset = moment.utcoffset()
    if offset is None or abs(offset) < MAX_OFFSET:
        return moment.isoformat()
    return moment.astimezone(UTC).isoformat()


def copy_rows(conn: psycopg.Connection, rows: Iterable[Row]) -> int:
    """COPY ``rows`` into raw.events, as one text, in the connection's transaction (on an
    autocommit connection the COPY is a transaction of its own)."""
    lines = [
        f"{tenant}\t{metric}\t{amount}\t{ts}\t{key}\t{NULL if metadata is None else metadata}\n"
        for tenant, metric, amount, ts, key, metadata in rows
    ]
    if lines:
        with (
            conn.cursor() as cur,
            cur.copy(f"copy raw.events ({', '.join(COLUMNS)}) from stdin") as copy,
        ):
            copy.write("".join(lines))
    return len(lines)


def copy_events(conn: psycopg.Connection, events: Iterable[Event]) -> int:
    """COPY ``events`` into raw.events in the connection's current transaction.

    The caller commits: an event counts as received only once its transaction is committed.
    """
    return copy_rows(
        conn,
        (
            (
                copy_text(event.tenant_id),
                copy_text(event.metric),
                str(event.amount),
                instant_text(event.timestamp),
                copy_text(event.idempotency_key),
                None if event.metadata is None else copy_text(json.dumps(event.metadata)),
            )
            for event in events
        ),
    )
