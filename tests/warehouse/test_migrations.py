"""Migrations apply once, in order, and raw tables are append-only."""

from __future__ import annotations

import psycopg
import pytest

from warehouse.migrate import apply_migrations, available


def test_migrations_are_idempotent(empty_database: str) -> None:
    with psycopg.connect(empty_database) as conn:
        first = apply_migrations(conn)
        second = apply_migrations(conn)
        recorded = [r[0] for r in conn.execute("select version from app.schema_migrations")]
    assert first == [m.version for m in available()]
    assert second == []
    assert recorded == first


@pytest.mark.parametrize("table", ["raw.events", "raw.subscription_events"])
@pytest.mark.parametrize(
    "statement", ["update {t} set received_at = now()", "delete from {t}", "truncate {t}"]
)
def test_raw_tables_are_append_only(warehouse: str, table: str, statement: str) -> None:
    with psycopg.connect(warehouse) as conn:
        apply_migrations(conn)
        conn.commit()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement.format(t=table))  # type: ignore[arg-type]


def test_raw_events_have_received_at(warehouse: str) -> None:
    with psycopg.connect(warehouse) as conn:
        apply_migrations(conn)
        columns = {
            r[0]
            for r in conn.execute(
                "select column_name from information_schema.columns "
                "where table_schema = 'raw' and table_name = 'events'"
            )
        }
    assert {"received_at", "event_seq", "idempotency_key"} <= columns
