"""Corrections reach every tenant they concern, on one invoice only, and nothing is dropped
silently: a subscription backdated into a closed month for a tenant without an invoice
there, months run out of order, a month whose drafts become empty, usage too late to re-rate.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from billing.cli import main
from billing.reports import list_invoices
from ingest.writer import Event, copy_events
from orchestration.pipeline import run_monthly
from sync.stripe_push import push_invoices
from tests.e2e.test_billing_engine import CATALOG, usage, utc
from tests.engine_helpers import apply_catalog, load_raw, warehouse_invoices
from tests.fake_stripe import FakeStripe, FakeStripeServer
from tests.reference_rater import rate_month
from tests.sync.conftest import push_settings
from warehouse.catalog import parse_catalog
from warehouse.subscriptions import cancel, record_subscription_event, start

pytestmark = pytest.mark.slow
JUN, OCT, NOV, DEC = date(2026, 6, 1), date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1)
DOC: dict[str, Any] = {
    **CATALOG,
    "tenants": [*CATALOG["tenants"], {"id": "t_new", "name": "Newcomer", "currency": "usd"}],
}


def adjustments(url: str, month: date) -> dict[tuple[str, str | None, date], int]:
    """(tenant, metric, corrected month) -> amount, of the adjustment lines on month's drafts."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """select tenant_id, metric, corrected_period_start::date, sum(amount_minor)
               from marts.fct_invoice_lines
               where line_type = 'adjustment' and period_start = %s
               group by 1, 2, 3""",
            (month,),
        ).fetchall()
    return {(t, m, c): int(a) for t, m, c, a in rows}


def held_alone(invoices: dict[str, Any], tenant: str, others: str) -> str:
    """The hold reason of ``tenant``'s invoice, the one held among ``invoices`` (by tenant),
    every other one ``others`` (finalized by a close, else draft)."""
    assert {t: i.status for t, i in invoices.items()} == {
        t: "held" if t == tenant else others for t in invoices
    }
    reason = invoices[tenant].hold_reason
    assert reason is not None
    return str(reason)


@pytest.mark.minutes(0.35)
def test_corrections_reach_every_tenant_on_one_invoice(warehouse: str, tmp_path: Path) -> None:
    apply_catalog(DOC, tmp_path)
    with psycopg.connect(warehouse) as conn:
        copy_events(conn, usage(31, utc(2026, 6, 1), utc(2026, 7, 1), "jun", 200))
        copy_events(conn, usage(32, utc(2026, 10, 1), utc(2026, 11, 1), "oct", 400))
    run_monthly(JUN, finalize=True, quiet=True)
    run_monthly(OCT, finalize=True, quiet=True)
    frozen = warehouse_invoices(warehouse, OCT)
    assert "t_new" not in frozen

    # after the close: late usage for October and June, and the admin backdates a
    # subscription into October for a tenant that had no invoice there
    with psycopg.connect(warehouse) as conn:
        copy_events(
            conn,
            [
                Event("t_kwd", "api_calls", Decimal(2000), utc(2026, 10, 20), "late-oct"),
                Event("t_kwd", "api_calls", Decimal(3000), utc(2026, 6, 20), "late-jun"),
            ],
        )
        start(conn, "t_new", "basic", utc(2026, 10, 10), "s_new")

    # months run out of order: December's draft carries no correction, November's does
    run_monthly(DEC, quiet=True)
    assert adjustments(warehouse, DEC) == {}
    run_monthly(NOV, quiet=True)
    run_monthly(DEC, quiet=True)
    assert adjustments(warehouse, DEC) == {}
    billed = adjustments(warehouse, NOV)
    events, subs = load_raw(warehouse)
    rated = rate_month(parse_catalog(yaml.safe_dump(DOC), "catalog.yaml"), events, subs, OCT)
    assert billed == {
        ("t_kwd", "api_calls", OCT): rated["t_kwd"].subtotal - frozen["t_kwd"].subtotal,
        # basic, 10.00 usd a month, for 22 of October's 31 days
        ("t_new", None, OCT): 710,
    }
    assert rated["t_new"].subtotal == 710

    # June is past the re-rate window (three months before November): listed, not dropped
    with psycopg.connect(warehouse) as conn:
        listed = conn.execute(
            """select tenant_id, metric, period_start::date, reason, event_count, amount_sum
               from marts.fct_unbilled_late_usage"""
        ).fetchall()
    assert listed == [("t_kwd", "api_calls", JUN, "past_adjustment_lookback", 1, 3000)]

    # a month whose drafts become empty keeps none: t_cancel's subscription now ends where
    # November begins (October unchanged, so no correction either)
    with psycopg.connect(warehouse) as conn:
        cancel(conn, "s_cancel", utc(2026, 11, 1), at_period_end=False)
    run_monthly(NOV, quiet=True)
    run_monthly(DEC, quiet=True)
    for month in (NOV, DEC):
        assert "t_cancel" not in warehouse_invoices(warehouse, month)
    assert adjustments(warehouse, NOV) == billed


def test_one_tenants_bad_data_holds_its_invoice_only(warehouse: str, tmp_path: Path) -> None:
    # Stripe here takes no kwd: the tenants billed in usd are the ones pushed
    usd = [t for t in DOC["tenants"] if t["currency"] == "usd"]
    doc = {**DOC, "tenants": [{**t, "stripe_customer_id": f"cus_{t['id']}"} for t in usd]}
    doc["subscriptions"] = [s for s in DOC["subscriptions"] if s["tenant_id"] != "t_kwd"]
    apply_catalog(doc, tmp_path)
    with psycopg.connect(warehouse) as conn:
        copy_events(conn, usage(33, utc(2026, 10, 1), utc(2026, 11, 1), "oct", 300))
        # a second subscription of t_up, from a history written before the state machine
        record_subscription_event(
            conn, "s_up_2", "t_up", "start", utc(2026, 10, 5), plan_key="plus"
        )

    run_monthly(OCT, finalize=True, quiet=True)
    invoices = {row.tenant_id: row for row in list_invoices(month=OCT)}
    reason = held_alone(invoices, "t_up", "finalized")
    assert reason.startswith("overlapping_subscriptions")
    assert "s_up" in reason
    listed = CliRunner().invoke(main, ["invoices", "list", "--month", "2026-10"])
    assert listed.exit_code == 0, listed.output
    assert "held" in listed.output and "overlapping_subscriptions" in listed.output

    # the rest are pushed; the held one is not
    fake = FakeStripe(customers={f"cus_{t['id']}" for t in DOC["tenants"]})
    with FakeStripeServer(fake) as stripe_server:
        settings = push_settings(warehouse, stripe_server.url)
        report = push_invoices(OCT, settings)
        assert report.count("failed") == 0
        pushed = {r.invoice_id for r in report.results if r.outcome == "pushed"}
        assert pushed == {i.invoice_id for t, i in invoices.items() if t != "t_up"}

        # the data fixed (the second subscription ended where it began), the month is run
        # again: t_up's invoice finalizes, priced as the reference rater prices it
        with psycopg.connect(warehouse) as conn:
            cancel(conn, "s_up_2", utc(2026, 10, 5), at_period_end=False)
        run_monthly(OCT, finalize=True, quiet=True)
        now = warehouse_invoices(warehouse, OCT)
        assert now["t_up"].status == "finalized"
        # October keeps its first close's watermark (app.closed_months): the second froze
        # t_up's invoice through a later subscription change, the cancellation above
        with psycopg.connect(warehouse) as conn:
            closed, first, later = conn.execute(
                """select (select subscription_events_through from app.closed_months
                           where period_start = %(oct)s::date::timestamptz),
                          min(subscription_events_through), max(subscription_events_through)
                   from app.finalized_invoices
                   where period_start = %(oct)s::date::timestamptz""",
                {"oct": OCT},
            ).fetchone() or (None, None, None)
        assert closed == first < later
        events, subs = load_raw(warehouse)
        rated = rate_month(parse_catalog(yaml.safe_dump(doc), "catalog.yaml"), events, subs, OCT)
        assert (now["t_up"].subtotal, now["t_up"].lines) == (
            rated["t_up"].subtotal,
            Counter(rated["t_up"].lines),
        )
        again = push_invoices(OCT, settings)
        assert [r.invoice_id for r in again.results if r.outcome == "pushed"] == [
            invoices["t_up"].invoice_id
        ]


@pytest.mark.minutes(0.2)
def test_a_held_month_is_not_re_rated_until_a_close_freezes_it(
    warehouse: str, tmp_path: Path
) -> None:
    """A close held t_up's October (two subscriptions at once, in October alone); late usage
    for it then bills no October correction on November's invoice, which the close did not
    hold: that would bill October there, at the held price, and again once October is
    fixed and finalized. Fixed and closed again, October bills the late usage itself."""
    doc = {**DOC, "subscriptions": [s for s in DOC["subscriptions"] if s["tenant_id"] != "t_kwd"]}
    apply_catalog(doc, tmp_path)
    with psycopg.connect(warehouse) as conn:
        copy_events(conn, usage(33, utc(2026, 10, 1), utc(2026, 11, 1), "oct", 300))
        # a history written before the state machine: a second subscription of t_up
        record_subscription_event(
            conn, "s_up_2", "t_up", "start", utc(2026, 10, 5), plan_key="plus"
        )
        record_subscription_event(conn, "s_up_2", "t_up", "cancel", utc(2026, 10, 20))
    run_monthly(OCT, finalize=True, quiet=True)
    held_alone({row.tenant_id: row for row in list_invoices(month=OCT)}, "t_up", "finalized")
    late = [e for e in usage(35, utc(2026, 10, 1), utc(2026, 11, 1), "late", 400)]
    with psycopg.connect(warehouse) as conn:
        copy_events(conn, late)

    run_monthly(NOV, quiet=True)
    november = {row.tenant_id: row for row in list_invoices(month=NOV)}
    assert november["t_up"].status == "draft"
    corrected = adjustments(warehouse, NOV)
    assert not [key for key in corrected if key[0] == "t_up"], corrected
    assert [key for key in corrected if key[0] == "t_end"]  # the others' late usage is billed

    # the data fixed, October closes for t_up with its late usage; nothing is left to
    # correct on November's invoice
    with psycopg.connect(warehouse) as conn:
        record_subscription_event(conn, "s_up_2", "t_up", "cancel", utc(2026, 10, 5))
    run_monthly(OCT, finalize=True, quiet=True)
    october = warehouse_invoices(warehouse, OCT)
    assert october["t_up"].status == "finalized"
    events, subs = load_raw(warehouse)
    rated = rate_month(parse_catalog(yaml.safe_dump(doc), "catalog.yaml"), events, subs, OCT)
    assert october["t_up"].subtotal == rated["t_up"].subtotal
    run_monthly(NOV, quiet=True)
    assert not [key for key in adjustments(warehouse, NOV) if key[0] == "t_up"]


def test_usage_no_price_can_bill_holds_its_tenants_invoice_only(
    warehouse: str, tmp_path: Path
) -> None:
    """A tenant's key may send amounts of 18 digits: a line that comes to 10^12 or more
    (here 20 events of 9e17 at a unit price) bills 0 and holds that tenant's invoice, in
    its month or, sent late for a closed month, on the invoice its adjustment lands on;
    every other tenant is invoiced (the run used to fail for all: bigint out of range)."""

    def huge(tenant: str, day: date, prefix: str) -> list[Event]:
        at = utc(day.year, day.month, day.day)
        return [
            Event(tenant, "api_calls", Decimal(9 * 10**17), at, f"{prefix}-{i}") for i in range(20)
        ]

    apply_catalog(DOC, tmp_path)
    with psycopg.connect(warehouse) as conn:
        copy_events(conn, usage(34, utc(2026, 10, 1), utc(2026, 11, 1), "oct", 300))
        copy_events(conn, huge("t_kwd", date(2026, 10, 7), "kwd"))
    run_monthly(OCT, finalize=True, quiet=True)
    october = {row.tenant_id: row for row in list_invoices(month=OCT)}
    reason = held_alone(october, "t_kwd", "finalized")
    assert reason.startswith("amount_out_of_range: ")
    assert "api_calls" in reason and "for the month of 2026-10-01" in reason
    with psycopg.connect(warehouse) as conn:
        line = conn.execute(
            """select amount_minor from marts.fct_invoice_lines
               where tenant_id = 't_kwd' and line_type = 'usage' and quantity >= 10^18"""
        ).fetchall()
    assert line == [(0,)]  # the line no price can bill; the invoice's other lines as ever

    # sent late for the closed October: its re-rating holds t_up's November invoice
    with psycopg.connect(warehouse) as conn:
        copy_events(conn, huge("t_up", date(2026, 10, 9), "late"))
    run_monthly(NOV, quiet=True)
    november = {row.tenant_id: row for row in list_invoices(month=NOV)}
    # t_kwd's October stays held; its November has nothing no price can bill
    assert "for the month of 2026-10-01" in held_alone(november, "t_up", "draft")


def test_mrr_spreads_a_yearly_fee_over_twelve_months_and_shows_closed_months_only(
    warehouse: str, tmp_path: Path
) -> None:
    # t_year's annual plan starts 2026-03-15: its year's fee is billed on March's invoice
    apply_catalog(CATALOG, tmp_path)
    mar, apr = date(2026, 3, 1), date(2026, 4, 1)
    run_monthly(mar, finalize=True, quiet=True)
    run_monthly(apr, finalize=True, quiet=True)
    run_monthly(date(2026, 5, 1), quiet=True)  # May is open: a draft
    with psycopg.connect(warehouse) as conn:
        spread = conn.execute(
            """select month_start::date, recurring_minor
               from intermediate.int_mrr_tenant_months where tenant_id = 't_year'
               order by month_start"""
        ).fetchall()
        mrr = conn.execute(
            """select month::date, tenant_id, recurring_minor, movement
               from marts.fct_mrr_monthly order by month, tenant_id"""
        ).fetchall()
    # 1200.00 a year: a twelfth a month, March 2026 to February 2027, not thirteen months
    assert [m for m, _ in spread] == [
        date(2026 + (2 + i) // 12, (2 + i) % 12 + 1, 1) for i in range(12)
    ]
    assert {r for _, r in spread} == {10000}
    # closed months only (March, April); the monthly tenant is not churned in a month
    # the yearly fee reaches but no invoice has closed yet
    assert {m for m, *_ in mrr} == {mar, apr}
    assert ("t_year", 10000, "new") in {(t, r, mv) for m, t, r, mv in mrr if m == mar}
    assert {(t, mv) for m, t, _, mv in mrr if m == apr} == {
        ("t_kwd", "unchanged"),
        ("t_year", "unchanged"),
    }
