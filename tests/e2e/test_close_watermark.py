"""The close is a watermark: every event is billed once, whatever the timing of its commit.

An ingest transaction held open across a month's finalize, and one held open while later
events are stored (the old rule looked back one hour before the newest arrival and skipped
it): each event lands on exactly one invoice, the month's or a later one as an adjustment.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from ingest.writer import Event, copy_events
from orchestration.pipeline import run_daily, run_monthly
from tests.e2e.test_billing_engine import CATALOG, expected, usage, utc
from tests.engine_helpers import apply_catalog, warehouse_invoices

pytestmark = pytest.mark.slow
OCT, NOV = date(2026, 10, 1), date(2026, 11, 1)


def billed_for_october(url: str) -> dict[str, int]:
    """Per tenant, October's frozen subtotal plus every correction of October since."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """select tenant_id, sum(amount_minor)
               from marts.fct_invoice_lines
               where (period_start = %(oct)s and line_type not in ('adjustment', 'credit'))
                  or corrected_period_start = %(oct)s
               group by tenant_id""",
            {"oct": OCT},
        ).fetchall()
    return {tenant: int(total) for tenant, total in rows}


@pytest.mark.minutes(0.25)
def test_an_ingest_transaction_open_across_the_finalize_is_billed_once(
    warehouse: str, tmp_path: Path
) -> None:
    apply_catalog(CATALOG, tmp_path)
    with psycopg.connect(warehouse) as conn:
        copy_events(conn, usage(21, utc(2026, 10, 1), utc(2026, 11, 1), "w", 600))
    held = [
        Event("t_kwd", "api_calls", Decimal(1000), utc(2026, 10, 15), "held-1"),
        Event("t_up", "api_calls", Decimal(900), utc(2026, 10, 31, 23), "held-2"),
    ]
    # the ingest transaction is open, its rows written, while October closes
    with psycopg.connect(warehouse) as ingest_conn:
        copy_events(ingest_conn, held)
        run_monthly(OCT, finalize=True, quiet=True)
        frozen = warehouse_invoices(warehouse, OCT)
        assert {i.status for i in frozen.values()} == {"finalized"}
    # committed now: after October's finalize, received (transaction start) before it

    run_monthly(NOV, quiet=True)
    adjustments = warehouse_invoices(warehouse, NOV, ("adjustment",))
    assert {t for t, i in adjustments.items() if i.lines} == {"t_kwd", "t_up"}
    rated = expected(warehouse, OCT)
    assert billed_for_october(warehouse) == {t: i.subtotal for t, i in rated.items()}

    # once November is finalized, a re-run of December bills no October correction again
    run_monthly(NOV, finalize=True, quiet=True)
    run_monthly(date(2026, 12, 1), quiet=True)
    december = warehouse_invoices(warehouse, date(2026, 12, 1), ("adjustment",))
    assert not any(i.lines for i in december.values())
    assert billed_for_october(warehouse) == {t: i.subtotal for t, i in rated.items()}


def test_an_ingest_transaction_open_for_hours_is_not_skipped(
    warehouse: str, tmp_path: Path
) -> None:
    apply_catalog(CATALOG, tmp_path)
    with psycopg.connect(warehouse) as long_conn:
        # a large `billing ingest --all-or-nothing`: received_at is its start
        copy_events(
            long_conn, [Event("t_kwd", "api_calls", Decimal(5000), utc(2026, 10, 3), "long")]
        )
        # meanwhile hours pass: other batches arrive and daily runs store them (these rows
        # are stamped two hours on, as the clock would be then)
        with psycopg.connect(warehouse) as other:
            other.execute(
                """insert into raw.events (tenant_id, metric, amount, event_ts,
                                           idempotency_key, received_at)
                   select 't_kwd', 'api_calls', 1, %s, 'later-' || n, now() + %s
                   from generate_series(1, 50) as n""",
                (utc(2026, 10, 4), timedelta(hours=2)),
            )
        run_daily(date(2026, 10, 1), date(2026, 10, 31), quiet=True)
    # the long transaction commits; the next run stores its event
    run_daily(date(2026, 11, 1), date(2026, 11, 1), quiet=True)
    with psycopg.connect(warehouse) as conn:
        stored = conn.execute(
            """select count(*) from intermediate.int_events_arrivals
               where idempotency_key = 'long' and is_first"""
        ).fetchone()
        day = conn.execute(
            """select quantity from marts.fct_usage_daily
               where tenant_id = 't_kwd' and metric = 'api_calls' and usage_date = '2026-10-03'"""
        ).fetchone()
    assert stored == (1,)
    assert day is not None and day[0] == 5000  # the late day was rebuilt
    run_monthly(OCT, quiet=True)
    october = warehouse_invoices(warehouse, OCT)
    assert october["t_kwd"].subtotal == expected(warehouse, OCT)["t_kwd"].subtotal
