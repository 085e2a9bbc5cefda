"""Finance: revenue, MRR and reconciliation marts over two finalized months pushed to
(a fake) Stripe and paid by webhook, and the reports with their charts."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

from billing.cli import main
from billing.demo import DEMO_CATALOG, generate_usage
from ingest.app import create_app
from ingest.writer import copy_events
from orchestration.pipeline import run_daily, run_monthly
from sync.stripe_push import push_invoices
from tests.fake_stripe import API_KEY, FakeStripe, FakeStripeServer, sign_webhook
from warehouse.settings import Settings

pytestmark = pytest.mark.slow
SECRET = "whsec_finance"


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def closed_months(warehouse: str) -> dict[str, Any]:
    """September and October 2026 of demo usage, invoiced, finalized, pushed to Stripe."""
    assert CliRunner().invoke(main, ["catalog", "apply", str(DEMO_CATALOG)]).exit_code == 0
    with psycopg.connect(warehouse) as conn:
        copy_events(conn, generate_usage(date(2026, 9, 1), seed=3))
        copy_events(conn, generate_usage(date(2026, 10, 1), seed=4))
    run_daily(date(2026, 9, 1), date(2026, 10, 31), quiet=True)
    run_monthly(date(2026, 9, 1), finalize=True, quiet=True)
    run_monthly(date(2026, 10, 1), finalize=True, quiet=True)
    fake = FakeStripe(
        customers={"cus_acme", "cus_globex", "cus_initech", "cus_umbrella", "cus_cyberdyne"}
    )
    with FakeStripeServer(fake) as server:
        settings = Settings(
            database_url=warehouse,
            stripe_api_key=API_KEY,  # type: ignore[arg-type]
            stripe_api_base=server.url,
        )
        report = push_invoices(settings=settings)
    assert report.count("failed") == 0 and report.count("pushed") >= 6
    return {"url": warehouse, "fake": fake}


def webhook(
    client: TestClient, event_id: str, kind: str, invoice: dict[str, Any], **extra: Any
) -> None:
    body = json.dumps(
        {
            "id": event_id,
            "type": kind,
            "created": int(time.time()),
            "data": {"object": invoice | extra},
        }
    ).encode()
    response = client.post(
        "/v1/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": sign_webhook(body, SECRET)},
    )
    assert response.status_code == 200, response.text


@pytest.mark.minutes(0.2)
def test_revenue_mrr_reconciliation_and_the_reports(
    closed_months: dict[str, Any], tmp_path: Path
) -> None:
    """One build of two closed months (about a minute) for the marts and for the reports,
    which read them (the reports after the payments, as finance would run them)."""
    url, fake = closed_months["url"], closed_months["fake"]
    assert rows(url, "select * from marts.fct_billing_reconciliation") == []
    # what each invoice collects: its total less the prepaid credits it used
    totals = {
        (tenant, month.strftime("%Y-%m")): (invoice_id, due)
        for invoice_id, tenant, month, due in rows(
            url,
            "select invoice_id, tenant_id, period_start, amount_due_minor from marts.fct_invoices",
        )
    }
    acme_sept, acme_total = totals[("acme", "2026-09")]
    umbrella_oct, umbrella_total = totals[("umbrella", "2026-10")]
    globex_oct, _ = totals[("globex", "2026-10")]

    settings = Settings(database_url=url, stripe_webhook_secret=SECRET)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as client:
        [stripe_acme] = fake.invoice_for(acme_sept)
        webhook(client, "evt_1", "invoice.paid", stripe_acme, amount_paid=acme_total)
        [stripe_globex] = fake.invoice_for(globex_oct)
        webhook(client, "evt_2", "invoice.payment_failed", stripe_globex)
        [stripe_umbrella] = fake.invoice_for(umbrella_oct)
        webhook(client, "evt_3", "invoice.paid", stripe_umbrella, amount_paid=umbrella_total - 1)

    revenue = {
        (month.strftime("%Y-%m"), currency): (invoiced - credits, paid, outstanding, count)
        for month, currency, invoiced, paid, outstanding, count, credits in rows(
            url,
            "select month, currency, invoiced_minor, paid_minor, outstanding_minor, "
            "invoice_count, credits_minor from marts.fct_revenue_monthly",
        )
    }
    september_usd = sum(
        t
        for (tenant, m), (_, t) in totals.items()
        if m == "2026-09" and tenant in ("acme", "globex")
    )
    assert revenue[("2026-09", "usd")] == (september_usd, acme_total, september_usd - acme_total, 1)
    assert revenue[("2026-10", "jpy")][1] == umbrella_total
    # the payment that disagrees is the reconciliation's one row
    assert rows(
        url,
        "select tenant_id, problem, invoiced_minor, paid_minor "
        "from marts.fct_billing_reconciliation",
    ) == [("umbrella", "payment", umbrella_total, umbrella_total - 1)]

    mrr = {
        (tenant, month.strftime("%Y-%m")): (mrr_minor, recurring, usage, discounts, movement)
        for month, tenant, mrr_minor, recurring, usage, discounts, movement in rows(
            url,
            "select month, tenant_id, mrr_minor, recurring_minor, usage_minor, discounts_minor,"
            " movement from marts.fct_mrr_monthly",
        )
    }
    assert mrr[("globex", "2026-10")][4] == "new"  # its subscription starts in October
    assert mrr[("globex", "2026-10")][3] < 0  # net of its launch discount
    assert mrr[("initech", "2026-10")][4] == "new"
    # the yearly plan's base fee counts a twelfth a month
    [(initech_base,)] = rows(
        url,
        "select amount_minor from marts.fct_invoice_lines "
        "where tenant_id = 'initech' and line_type = 'base_fee'",
    )
    assert mrr[("initech", "2026-10")][1] == round(initech_base / 12)
    assert mrr[("acme", "2026-10")][4] in ("expansion", "contraction", "unchanged")
    for (_, _), (mrr_minor, recurring, usage, discounts, _) in mrr.items():
        assert mrr_minor == recurring + usage + discounts

    reports_render_the_marts_and_their_charts(url, tmp_path)


def reports_render_the_marts_and_their_charts(url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    as_json = runner.invoke(
        main, ["report", "revenue", "--from", "2026-09", "--to", "2026-10", "--format", "json"]
    )
    assert as_json.exit_code == 0, as_json.output
    records = json.loads(as_json.stdout)
    mart = rows(
        url,
        "select month::date, currency, invoiced_minor from marts.fct_revenue_monthly order by 1, 2",
    )
    assert [(r["month"], r["currency"], r["invoiced_minor"]) for r in records] == [
        (str(m), c, i) for m, c, i in mart
    ]
    as_csv = runner.invoke(
        main, ["report", "revenue", "--from", "2026-09", "--to", "2026-10", "--format", "csv"]
    )
    assert list(csv.DictReader(io.StringIO(as_csv.stdout))) == [
        {k: str(v) for k, v in record.items()} for record in records
    ]
    chart = tmp_path / "revenue.png"
    table = runner.invoke(
        main, ["report", "revenue", "--from", "2026-09", "--to", "2026-10", "--plot", str(chart)]
    )
    assert table.exit_code == 0, table.output
    assert "USD" in table.stdout  # money in major units with its currency

    image = Image.open(chart)
    assert image.format == "PNG" and image.size == (900, 450)
    assert len(set(image.convert("L").getdata())) > 10  # not a blank canvas
    plotted = json.loads(image.text["billing-report"])
    assert set(plotted) == {r["currency"] for r in records}
    for record in records:
        exponent = {"usd": 2, "eur": 2, "jpy": 0}[record["currency"]]
        assert [record["month"], record["invoiced_minor"] / 10**exponent] in plotted[
            record["currency"]
        ]

    usage_chart = tmp_path / "usage.png"
    usage = runner.invoke(
        main,
        [
            "report",
            "usage",
            "--tenant",
            "acme",
            "--from",
            "2026-10-01",
            "--to",
            "2026-10-31",
            "--format",
            "json",
            "--plot",
            str(usage_chart),
        ],
    )
    assert usage.exit_code == 0, usage.output
    days = json.loads(usage.stdout)
    daily = rows(
        url,
        "select usage_date, metric, quantity from marts.fct_usage_daily "
        "where tenant_id = 'acme' and usage_date >= '2026-10-01' order by 1, 2",
    )
    assert [(d["date"], d["metric"], d["quantity"]) for d in days] == [
        (str(day), metric, format(q.normalize(), "f") if q == q.to_integral() else str(q))
        for day, metric, q in daily
    ]
    assert set(json.loads(Image.open(usage_chart).text["billing-report"])) == {
        d["metric"] for d in days
    }
    bad = [
        runner.invoke(
            main,
            ["report", "usage", "--tenant", "nobody", "--from", "2026-10-01", "--to", "2026-10-02"],
        ),
        runner.invoke(
            main,
            ["report", "usage", "--tenant", "acme", "--from", "2026-10-05", "--to", "2026-10-01"],
        ),
        runner.invoke(main, ["report", "revenue", "--from", "2026-13", "--to", "2026-10"]),
        runner.invoke(
            main, ["report", "revenue", "--from", "2026-09", "--to", "2026-10", "--plot", "x.jpg"]
        ),
        runner.invoke(  # a traceback before: the chart was drawn, then its file not opened
            main,
            ["report", "revenue", "--from", "2026-09", "--to", "2026-10", "--plot", "no/x.png"],
        ),
        # a tenant's typo listed nothing and exited 0, which read as "no invoices"
        runner.invoke(main, ["invoices", "list", "--tenant", "acme "]),
        runner.invoke(main, ["credits", "list", "--tenant", "nobody"]),
    ]
    assert [b.exit_code for b in bad] == [2] * 7
    assert "the chart is a PNG; name the file .png" in bad[3].output
    assert "x.png: no directory 'no' to write it in" in bad[4].output
    assert "--tenant: unknown tenant 'acme '" in bad[5].output
    assert "--tenant: unknown tenant 'nobody'" in bad[6].output
