"""The Stripe push: exactly once under failures at every step, failures reported, CLI."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from click.testing import CliRunner

from billing.cli import main
from sync.stripe_push import push_invoices
from tests.fake_stripe import API_KEY, FakeStripe, FakeStripeServer, Fault
from tests.helpers import with_dbname
from tests.sync.conftest import BROKEN, INVOICES, expected_total, insert_finalized, push_settings


def assert_in_stripe_once(fake: FakeStripe, url: str) -> None:
    """Every good invoice is in the fake once, finalized, with its lines, tax and total."""
    with psycopg.connect(url) as conn:
        recorded = dict(
            conn.execute(
                """select invoice_id, provider_invoice_id from app.invoice_status_events
                   where status = 'pending' and source = 'stripe_push'"""
            ).fetchall()
        )
    assert set(recorded) == set(INVOICES)
    for invoice_id, (_, currency, _, lines) in INVOICES.items():
        [stripe_invoice] = fake.invoice_for(invoice_id)
        assert stripe_invoice["id"] == recorded[invoice_id]
        assert stripe_invoice["status"] == "open"
        assert stripe_invoice["currency"] == currency
        assert stripe_invoice["total"] == expected_total(invoice_id)
        items = {
            item["metadata"]["billing_line_id"]: item["amount"]
            for item in fake.items_of(stripe_invoice["id"])
        }
        assert len(items) == len(fake.items_of(stripe_invoice["id"]))  # no line twice
        tax = expected_total(invoice_id) - sum(amount for _, amount in lines)
        assert items == {f"{invoice_id}:{line}": amount for line, amount in lines} | {"tax": tax}


def test_push_creates_each_invoice_once_and_a_second_push_nothing(
    finalized: str, stripe_server: FakeStripeServer
) -> None:
    settings = push_settings(finalized, stripe_server.url)
    report = push_invoices(settings=settings)
    assert (report.count("pushed"), report.count("skipped"), report.count("failed")) == (3, 0, 0)
    assert_in_stripe_once(stripe_server.fake, finalized)
    # negative lines go as credits: a negative invoice item
    [october] = stripe_server.fake.invoice_for("inv_acme_10")
    assert -120 in [item["amount"] for item in stripe_server.fake.items_of(october["id"])]

    posts_before = sum(1 for method, _ in stripe_server.fake.requests if method == "POST")
    again = push_invoices(settings=settings)
    assert (again.count("pushed"), again.count("skipped")) == (0, 3)
    assert sum(1 for method, _ in stripe_server.fake.requests if method == "POST") == posts_before
    assert_in_stripe_once(stripe_server.fake, finalized)


def test_push_of_one_month_only(finalized: str, stripe_server: FakeStripeServer) -> None:
    from datetime import date

    report = push_invoices(date(2026, 9, 1), push_settings(finalized, stripe_server.url))
    assert [r.invoice_id for r in report.results] == ["inv_acme_09"]
    assert stripe_server.fake.invoice_for("inv_acme_10") == []


@pytest.fixture
def template(finalized: str, server_url: str) -> str:
    """The finalized database's name, to be copied fresh for each failure."""
    return str(psycopg.conninfo.conninfo_to_dict(finalized)["dbname"])


def fresh_copy(server_url: str, template: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}" template "{template}"')
    return name


def drop(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'drop database "{name}" with (force)')


@contextmanager
def pushing_to(fake: FakeStripe, server_url: str, template: str) -> Iterator[tuple[str, str]]:
    """A fresh copy of the finalized warehouse and ``fake`` served: (warehouse, Stripe) URLs."""
    name = fresh_copy(server_url, template)
    try:
        with FakeStripeServer(fake) as srv:
            yield with_dbname(server_url, name), srv.url
    finally:
        drop(server_url, name)


@pytest.mark.minutes(0.7)
def test_exactly_once_when_each_request_fails_in_turn(server_url: str, template: str) -> None:
    """Fail every request of a push in turn, three ways; retrying completes it exactly once."""
    customers = {"cus_acme", "cus_initech"}
    clean = FakeStripe(customers=set(customers))
    with pushing_to(clean, server_url, template) as (url, stripe_url):
        push_invoices(settings=push_settings(url, stripe_url))
    steps = list(clean.requests)
    # list, create, list items, 3 or 4 items, finalize: for each of the three invoices
    assert len(steps) >= 3 * 6

    for number, (method, path) in enumerate(steps):
        for mode in ("error", "drop", "timeout"):
            fake = FakeStripe(customers=set(customers), faults=[Fault(number, mode)])
            fake.timeout_seconds = 0.5
            try:
                with pushing_to(fake, server_url, template) as (url, stripe_url):
                    settings = push_settings(url, stripe_url, timeout=0.5)
                    first = push_invoices(settings=settings)
                    # without network retries the invoice hit fails, and only that one
                    assert first.count("failed") == 1, (number, mode, first.failed)
                    assert "Stripe refused" in first.failed[0].message
                    second = push_invoices(settings=settings)
                    assert second.count("failed") == 0, (number, mode, second.failed)
                    assert second.count("pushed") == first.count("failed")
                    assert_in_stripe_once(fake, url)
                    third = push_invoices(settings=settings)
                    assert third.count("skipped") == len(INVOICES)
            except AssertionError as exc:
                raise AssertionError(f"request {number} ({method} {path}), mode {mode}") from exc


def test_sdk_retries_carry_the_idempotency_key(
    finalized: str, stripe_server: FakeStripeServer
) -> None:
    """With network retries on, lost answers on creates are replayed, not repeated, in one push."""
    fake = stripe_server.fake
    fake.timeout_seconds = 0.5
    # request 1 creates the first invoice, 3 its first item, the last its finalization
    fake.faults = [Fault(1, "drop"), Fault(3, "timeout"), Fault(6, "error"), Fault(9, "drop")]
    report = push_invoices(settings=push_settings(finalized, stripe_server.url, retries=2))
    assert report.count("pushed") == 3, report.failed
    assert_in_stripe_once(fake, finalized)


def test_failures_are_reported_and_do_not_stop_the_others(
    finalized: str, stripe_server: FakeStripeServer
) -> None:
    insert_finalized(finalized, BROKEN)
    report = push_invoices(settings=push_settings(finalized, stripe_server.url))
    assert report.count("pushed") == 3
    messages = {r.invoice_id: r.message for r in report.failed}
    assert set(messages) == set(BROKEN)
    assert "no stripe_customer_id" in messages["inv_nocus_10"]
    assert "parameter currency" in messages["inv_kuwait_10"]
    assert "Invalid currency: kwd" in messages["inv_kuwait_10"]
    assert "HTTP 400" in messages["inv_ghost_10"]
    assert "No such customer" in messages["inv_ghost_10"]
    assert_in_stripe_once(stripe_server.fake, finalized)


def test_cli_shows_a_summary_and_fails_when_an_invoice_failed(
    finalized: str, stripe_server: FakeStripeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from warehouse.settings import get_settings

    runner = CliRunner()
    unconfigured = runner.invoke(main, ["sync", "stripe"])
    assert unconfigured.exit_code == 2
    assert "BILLING_STRIPE_API_KEY" in unconfigured.output
    assert "pushing to Stripe" not in unconfigured.output  # the error alone, no stale bar

    monkeypatch.setenv("BILLING_STRIPE_API_KEY", API_KEY)
    monkeypatch.setenv("BILLING_STRIPE_API_BASE", stripe_server.url)
    get_settings.cache_clear()
    assert runner.invoke(main, ["sync", "stripe", "--month", "2026-13"]).exit_code == 2

    done = runner.invoke(main, ["sync", "stripe", "--month", "2026-10"])
    assert done.exit_code == 0, done.output
    assert "2 pushed, 0 skipped (already in Stripe), 0 failed" in done.output

    insert_finalized(finalized, {"inv_nocus_10": BROKEN["inv_nocus_10"]})
    partial = runner.invoke(main, ["sync", "stripe"])
    assert partial.exit_code == 1
    assert "1 pushed, 2 skipped (already in Stripe), 1 failed" in partial.output
    assert "inv_nocus_10 (tenant nocus): tenant 'nocus' has no stripe_customer_id" in partial.output


def test_cli_push_on_a_warehouse_nothing_set_up_applies_its_migrations(
    empty_database: str, stripe_server: FakeStripeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`billing sync stripe` on a warehouse without its tables (a new one) pushes nothing,
    as every command does on a warehouse it set up first, rather than failing on them."""
    from warehouse.settings import get_settings

    monkeypatch.setenv("BILLING_STRIPE_API_KEY", API_KEY)
    monkeypatch.setenv("BILLING_STRIPE_API_BASE", stripe_server.url)
    get_settings.cache_clear()
    done = CliRunner().invoke(main, ["sync", "stripe"])
    assert done.exit_code == 0, done.output
    assert "0 pushed, 0 skipped (already in Stripe), 0 failed" in done.output
    assert stripe_server.fake.requests == []


def first_request(server_url: str, template: str, method: str, suffix: str) -> int:
    """The number of the first request of a clean push that is ``method`` on a path ending
    in ``suffix``."""
    fake = FakeStripe(customers={"cus_acme", "cus_initech"})
    with pushing_to(fake, server_url, template) as (url, stripe_url):
        push_invoices(settings=push_settings(url, stripe_url))
    return next(
        n for n, (m, path) in enumerate(fake.requests) if m == method and path.endswith(suffix)
    )


def test_totals_are_compared_before_finalizing(server_url: str, template: str) -> None:
    """A draft whose total is not ours (an item added by hand in Stripe) is reported and
    stays a draft: nothing is collected on it."""
    finalize = first_request(server_url, template, "POST", "/finalize")
    fake = FakeStripe(customers={"cus_acme", "cus_initech"}, faults=[Fault(finalize, "error")])
    with pushing_to(fake, server_url, template) as (url, stripe_url):
        first = push_invoices(settings=push_settings(url, stripe_url))
        (failed,) = first.failed
        [draft] = fake.invoice_for(failed.invoice_id)
        assert draft["status"] == "draft"
        draft["total"] += 999  # someone edits the draft in Stripe's dashboard

        second = push_invoices(settings=push_settings(url, stripe_url))
        (mismatch,) = second.failed
        assert mismatch.invoice_id == failed.invoice_id
        assert "left as a draft, not finalized" in mismatch.message
        assert fake.invoice_for(failed.invoice_id)[0]["status"] == "draft"
        with psycopg.connect(url) as conn:
            recorded = conn.execute(
                "select count(*) from app.invoice_status_events where invoice_id = %s "
                "and status = 'pending'",
                (failed.invoice_id,),
            ).fetchone()
        assert recorded == (0,)


def test_a_push_after_the_customer_changed_finds_the_earlier_draft(
    server_url: str, template: str
) -> None:
    item = first_request(server_url, template, "POST", "/v1/invoiceitems")
    customers = {"cus_acme", "cus_initech", "cus_acme_new"}
    fake = FakeStripe(customers=customers, faults=[Fault(item, "drop")])
    fake.timeout_seconds = 0.5
    with pushing_to(fake, server_url, template) as (url, stripe_url):
        settings = push_settings(url, stripe_url, timeout=0.5)
        first = push_invoices(settings=settings)
        (failed,) = first.failed
        [draft] = fake.invoice_for(failed.invoice_id)
        with psycopg.connect(url) as conn:  # the tenant moves to another Stripe customer
            conn.execute(
                "update app.tenants set stripe_customer_id = 'cus_acme_new' "
                "where stripe_customer_id = %s",
                (draft["customer"],),
            )
        second = push_invoices(settings=settings)
        assert second.count("failed") == 0, second.failed
        [pushed] = fake.invoice_for(failed.invoice_id)  # nothing created twice
        assert pushed["id"] == draft["id"] and pushed["status"] == "open"
        assert pushed["total"] == expected_total(failed.invoice_id)
