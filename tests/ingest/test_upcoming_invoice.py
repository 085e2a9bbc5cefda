"""GET /v1/invoices/upcoming: the current month's invoice priced now, by the monthly run's
own models (the `preview` views), equal line for line to `billing run monthly` on the same
data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient

from billing.cli import main
from ingest.upcoming import set_preview, upcoming_invoices
from orchestration.dbt_vars import current_month
from orchestration.pipeline import PREVIEW_INVOICES, run_daily
from tests.helpers import explained, plan_nodes, plan_scans
from tests.ingest.test_subscriptions_and_reads import bearer, tenant_key, with_demo


def _event(tenant: str, key: str, metric: str, amount: Any, at: datetime, **meta: Any) -> dict:
    body = {
        "tenant_id": tenant,
        "metric": metric,
        "amount": amount,
        "timestamp": at.isoformat(),
        "idempotency_key": key,
    }
    return body | ({"metadata": meta} if meta else {})


def test_upcoming_invoice_equals_the_monthly_run_line_for_line(
    api: TestClient, catalog_loaded: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    month = current_month(now)
    month_start = datetime.combine(month, datetime.min.time(), UTC)
    # a moment between the month's start and now, not on a day's boundary
    mid = month_start + (now - month_start) / 2 + timedelta(seconds=7)
    quarter = (now - month_start) / 4
    # the events' hours into the month: shorter in a month's first hours, where an hour
    # after its start is still to come (and the API refuses events from the future)
    hour = min(timedelta(hours=1), (now - month_start) / 8)
    with_demo(
        tmp_path,
        metrics=[{"key": "payments", "aggregation": "sum"}],
        plans=[
            {
                "key": "payg",
                "name": "Pay as you go",
                "interval": "month",
                "currency": "usd",
                "charges": [
                    {
                        "metric": "payments",
                        "model": "percentage",
                        "rate": "0.01",
                        "fixed_fee": "0.30",
                        "free_units": 1,
                    }
                ],
            }
        ],
        tenants=[
            {"id": "hooli", "name": "Hooli", "currency": "usd"},
            {"id": "pied", "name": "Pied Piper", "currency": "usd"},
        ],
        subscriptions=[
            {"id": "sub_pied", "tenant_id": "pied", "plan": "payg", "start": "2026-01-01T00:00:00Z"}
        ],
    )
    acme, globex, cyberdyne, pied = (tenant_key(t) for t in ("acme", "globex", "cyberdyne", "pied"))

    def send(key: str, events: list[dict[str, Any]]) -> None:
        response = api.post("/v1/events", json={"events": events}, headers=bearer(key))
        assert response.status_code == 200, response.text

    def tokens(key: str, amount: int, at: datetime, model: str, direction: str) -> dict:
        return _event("cyberdyne", key, "tokens", amount, at, model=model, direction=direction)

    # usage a daily run stores (the upcoming invoice reads whole days of it from the
    # partials), every aggregation, dimensions, a percentage charge read event by event
    send(
        acme,
        [
            _event("acme", "a1", "api_calls", 12_000, month_start),
            _event("acme", "s1", "storage_gb", 120, month_start + hour),
            _event("acme", "u1", "active_users", 1, month_start, user_id="x"),
            _event("acme", "t0", "seats", 5, month_start + 2 * hour),
        ],
    )
    send(
        globex,
        [
            _event("globex", "g1", "api_calls", 3_000, month_start),
            _event("globex", "g2", "api_calls", 10, mid - quarter),
            _event("globex", "g3", "api_calls", 20, mid + quarter),
        ],
    )
    send(
        cyberdyne,
        [
            tokens("k1", 5_000, month_start, "large", "input"),
            tokens("k2", 7_000, mid, "small", "output"),
        ],
    )
    send(
        pied,
        [
            _event("pied", f"p{i}", "payments", 100 * i, mid + timedelta(minutes=i))
            for i in (1, 2, 3)
        ],
    )
    run_daily(month, now.date(), quiet=True)
    with psycopg.connect(catalog_loaded) as conn:
        partials = conn.execute(
            """select amount, event_count from intermediate.int_usage_partials
               where tenant_id = 'acme' and metric = 'api_calls'"""
        ).fetchall()
    assert partials == [(Decimal(12_000), 1)]  # what the daily run stored, aggregated
    # a second batch: a new user and one seen before, on days stored already: the month's
    # values (which the upcoming invoice reads a whole month's distinct users from) gain
    # the new user, the other's event is counted without its value
    send(
        acme,
        [
            _event("acme", "u4", "active_users", 1, month_start + 4 * hour, user_id="z"),
            _event("acme", "u5", "active_users", 1, month_start + 5 * hour, user_id="x"),
        ],
    )
    run_daily(month, now.date(), quiet=True)
    with psycopg.connect(catalog_loaded) as conn:
        values = conn.execute(
            """select property_value, event_count from intermediate.int_usage_month_values
               where tenant_id = 'acme' and metric = 'active_users' and usage_month = %s
               order by arrival_batch, property_value""",
            (month,),
        ).fetchall()
    assert values == [("x", 1), ("z", 1), (None, 1)]
    # received since (pending), on days the partials hold too: a retry of a stored event (not
    # counted twice), a user seen before (counted once), a later and a smaller value
    send(
        acme,
        [
            _event("acme", "a1", "api_calls", 12_000, month_start),
            _event("acme", "a2", "api_calls", "2500.5", now),
            _event("acme", "u2", "active_users", 1, now, user_id="y"),
            _event("acme", "u3", "active_users", 1, month_start + 3 * hour, user_id="x"),
            _event("acme", "t1", "seats", 12, now),
            _event("acme", "s2", "storage_gb", 100, now),
        ],
    )
    send(
        globex,
        [_event("globex", "g4", "builds", 1, now), _event("globex", "g5", "api_calls", 7, now)],
    )
    send(cyberdyne, [tokens("k3", 11, now, "large", "input"), tokens("k4", 13, now, "tiny", "x")])
    send(pied, [_event("pied", "p4", "payments", 1_000, now)])
    # a plan change in the middle of a day: that day of each segment is read event by event
    changed = api.post(
        "/v1/subscriptions/sub_globex/change-plan", json={"plan": "pro", "at": mid.isoformat()}
    )
    assert changed.status_code == 200, changed.text

    upcoming = {}
    for tenant, key in (
        ("acme", acme),
        ("globex", globex),
        ("cyberdyne", cyberdyne),
        ("pied", pied),
    ):
        response = api.get("/v1/invoices/upcoming", headers=bearer(key))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["tenant_id"] == tenant
        (invoice,) = body["invoices"]
        assert invoice["status"] == "draft"
        assert invoice["period_start"].startswith(str(month))
        upcoming[tenant] = invoice
    usage = {
        line["metric"]: line["quantity"]
        for line in upcoming["acme"]["lines"]
        if line["line_type"] == "usage"
    }
    assert usage == {
        "api_calls": "14500.5",
        "active_users": "3",
        "storage_gb": "120",
        "seats": "12",
    }
    assert {line["plan"] for line in upcoming["globex"]["lines"] if line["plan"]} == {
        "starter",
        "pro",
    }
    # the admin names the tenant, and reads the same
    admin = api.get("/v1/invoices/upcoming", params={"tenant_id": "acme"})
    assert admin.status_code == 200, admin.text
    assert admin.json()["invoices"] == [upcoming["acme"]]

    # the monthly run, as the CLI runs it, on the same data
    ran = CliRunner().invoke(main, ["run", "monthly", "--month", f"{month:%Y-%m}"])
    assert ran.exit_code == 0, ran.output
    for tenant in upcoming:
        response = api.get("/v1/invoices", params={"tenant_id": tenant, "month": f"{month:%Y-%m}"})
        assert response.json()["invoices"] == [upcoming[tenant]]
    with psycopg.connect(catalog_loaded) as conn:
        drafts = conn.execute(
            """select count(*) from marts.fct_invoice_lines
               where tenant_id in ('acme', 'globex', 'cyberdyne', 'pied')
                 and period_start = %s""",
            (month_start,),
        ).fetchone()
    assert drafts is not None
    assert drafts[0] == sum(len(invoice["lines"]) for invoice in upcoming.values()) > 8


def test_upcoming_invoice_is_the_callers_own(api: TestClient, tmp_path: Path) -> None:
    with_demo(tmp_path, tenants=[{"id": "hooli", "name": "Hooli", "currency": "usd"}])
    acme = tenant_key("acme")
    other = api.get("/v1/invoices/upcoming", params={"tenant_id": "globex"}, headers=bearer(acme))
    assert other.status_code == 403, other.text
    unnamed = api.get("/v1/invoices/upcoming")
    assert unnamed.status_code == 422, unnamed.text
    assert unnamed.json()["error"]["details"][0]["field"] == "tenant_id"
    nothing = api.get("/v1/invoices/upcoming", headers=bearer(tenant_key("hooli")))
    assert nothing.status_code == 404, nothing.text
    assert "hooli" in nothing.json()["error"]["message"]


def test_upcoming_invoice_reads_days_a_redefined_metric_stored_event_by_event(
    api: TestClient, catalog_loaded: str, tmp_path: Path
) -> None:
    """A metric redefined after a daily run stored its days (no finalized invoice billed it
    yet): the days' partials, aggregated by the old definition, are not merged; the events
    are read again, as the monthly run reads them, and as a daily run reads them for
    fct_usage_daily (made of the partials of its days otherwise)."""
    now = datetime.now(UTC).replace(microsecond=0)
    month = current_month(now)
    month_start = datetime.combine(month, datetime.min.time(), UTC)
    hour = min(timedelta(hours=1), (now - month_start) / 8)
    with_demo(tmp_path)
    acme = tenant_key("acme")
    stored = [
        _event("acme", f"u{n}", "active_users", 1, month_start + n * hour, user_id=u, team=t)
        for n, (u, t) in enumerate((("x", "red"), ("y", "red"), ("z", "blue")))
    ]
    assert api.post("/v1/events", json={"events": stored}, headers=bearer(acme)).status_code == 200
    run_daily(month, now.date(), quiet=True)

    def active(invoices: list[dict[str, Any]]) -> list[str]:
        return [
            line["quantity"]
            for invoice in invoices
            for line in invoice["lines"]
            if line["metric"] == "active_users"
        ]

    before = api.get("/v1/invoices/upcoming", headers=bearer(acme)).json()["invoices"]
    assert active(before) == ["3"]  # three users, from the month's stored values
    # active teams counted from now on: the catalog applied again
    doc = yaml.safe_load((tmp_path / "catalog.yaml").read_text())
    (metric,) = (m for m in doc["metrics"] if m["key"] == "active_users")
    metric["property"] = "team"
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(doc))
    applied = CliRunner().invoke(main, ["catalog", "apply", str(tmp_path / "catalog.yaml")])
    assert applied.exit_code == 0, applied.output

    after = api.get("/v1/invoices/upcoming", headers=bearer(acme))
    assert after.status_code == 200, after.text
    upcoming = after.json()["invoices"]
    assert active(upcoming) == ["2"]  # the partials' users would say 3
    ran = CliRunner().invoke(main, ["run", "monthly", "--month", f"{month:%Y-%m}"])
    assert ran.exit_code == 0, ran.output
    monthly = api.get("/v1/invoices", params={"tenant_id": "acme", "month": f"{month:%Y-%m}"})
    assert monthly.json()["invoices"] == upcoming

    daily = """select usage_date, quantity, event_count from marts.fct_usage_daily
               where tenant_id = 'acme' and metric = 'active_users'"""
    with psycopg.connect(catalog_loaded) as conn:
        assert conn.execute(daily).fetchall() == [(month, 3, 3)]  # users, by the partials
    run_daily(month, now.date(), quiet=True)
    with psycopg.connect(catalog_loaded) as conn:
        assert conn.execute(daily).fetchall() == [(month, 2, 3)]  # teams, event by event


def test_upcoming_invoice_bills_a_closed_months_late_usage_as_the_monthly_run_does(
    api: TestClient, catalog_loaded: str
) -> None:
    """Usage of a finalized month that arrives after its close is an adjustment on the next
    invoice. The upcoming invoice reads the closed months, their frozen invoices and their
    late usage for its tenant alone, and answers the adjustment the monthly run bills."""
    now = datetime.now(UTC).replace(microsecond=0)
    month = current_month(now)
    last = current_month(datetime.combine(month, datetime.min.time(), UTC) - timedelta(days=1))
    last_start = datetime.combine(last, datetime.min.time(), UTC)
    acme, globex = tenant_key("acme"), tenant_key("globex")

    def send(key: str, events: list[dict[str, Any]]) -> None:
        response = api.post("/v1/events", json={"events": events}, headers=bearer(key))
        assert response.status_code == 200, response.text

    send(acme, [_event("acme", "a1", "api_calls", 12_000, last_start + timedelta(days=2))])
    send(globex, [_event("globex", "g1", "api_calls", 3_000, last_start + timedelta(days=3))])
    runner = CliRunner()
    closed = runner.invoke(main, ["run", "monthly", "--month", f"{last:%Y-%m}", "--finalize"])
    assert closed.exit_code == 0, closed.output
    # after the close: acme's late usage of the closed month, past what its plan includes
    send(acme, [_event("acme", "late1", "api_calls", 200_000, last_start + timedelta(days=4))])
    run_daily(month, now.date(), quiet=True)

    upcoming = {}
    for tenant, key in (("acme", acme), ("globex", globex)):
        response = api.get("/v1/invoices/upcoming", headers=bearer(key))
        assert response.status_code == 200, response.text
        (invoice,) = response.json()["invoices"]
        upcoming[tenant] = invoice
    adjustments = [line for line in upcoming["acme"]["lines"] if line["line_type"] == "adjustment"]
    assert adjustments and all(line["amount_minor"] > 0 for line in adjustments)
    assert not [line for line in upcoming["globex"]["lines"] if line["line_type"] == "adjustment"]

    ran = runner.invoke(main, ["run", "monthly", "--month", f"{month:%Y-%m}"])
    assert ran.exit_code == 0, ran.output
    for tenant in upcoming:
        response = api.get("/v1/invoices", params={"tenant_id": tenant, "month": f"{month:%Y-%m}"})
        assert response.json()["invoices"] == [upcoming[tenant]]


def test_upcoming_invoice_plans_alike_whichever_tenant_a_connection_reads_first(
    catalog_loaded: str,
) -> None:
    """A connection plans the upcoming invoice's read once (a generic plan), and the planner
    must not estimate it with the tenant it happened to read first: at 1M events, a plan
    made for the biggest tenant read every small tenant after it in 270-330 ms instead of
    20, and one made for a small tenant the biggest in 350-400 ms instead of 100. Here acme
    holds nearly all of the month's events; a connection that read acme first and one that
    read globex first plan globex's read the same, estimates included."""
    now = datetime.now(UTC).replace(microsecond=0)
    month = current_month(now)
    month_start = datetime.combine(month, datetime.min.time(), UTC)
    with psycopg.connect(catalog_loaded, autocommit=True) as conn:
        conn.execute(
            """insert into raw.events (tenant_id, metric, amount, event_ts, idempotency_key)
               select case when g %% 500 = 0 then 'globex' else 'acme' end, 'api_calls', 1,
                      %s + (%s - %s) * random(), 'skew-' || g
               from generate_series(1, 5000) as g""",
            (month_start, now, month_start),
        )
    run_daily(month, now.date(), quiet=True)
    with psycopg.connect(catalog_loaded, autocommit=True) as conn:
        # vacuumed too: autovacuum vacuuming a table between the two plans (the run's
        # inserts ask it to) would change its pages and visible pages, and the estimates
        conn.execute("vacuum analyze")

    def globex_plan_after(first: str) -> list[str]:
        with psycopg.connect(catalog_loaded, autocommit=True) as conn:
            upcoming_invoices(conn, first, month)  # plans the read, with `first` set
            [(name,)] = conn.execute(
                """select name from pg_prepared_statements
                   where statement like %s""",
                (f"%{PREVIEW_INVOICES}%",),
            ).fetchall()
            with conn.transaction():
                set_preview(conn, "globex", month)
                # a utility statement takes no parameters: the values are literals
                plan = conn.execute(f"explain execute {name}('globex', '{month}')").fetchall()
        return [line for (line,) in plan]

    after_acme, after_globex = globex_plan_after("acme"), globex_plan_after("globex")
    assert any("rows=" in line for line in after_acme)  # estimates shown, and compared
    assert after_acme == after_globex


def test_upcoming_invoice_reads_no_other_tenants_closes_or_subscriptions(
    catalog_loaded: str,
) -> None:
    """A read costs its tenant's history, not the warehouse's: no scan in its plan returns
    another tenant's subscription changes or frozen invoices, and none reads their frozen
    lines (the rows it returns and those its filter removes). The closed months are one row each
    (app.closed_months, kept by the close), not a grouping of every invoice ever frozen;
    the subscription intervals are computed for the tenant's subscriptions alone; the
    frozen lines are found by their tenant's index (migration 0024). Each grew every read
    with the warehouse (10,000 tenants: 100-150 ms each; 1.8M frozen lines: 160-250 ms)."""
    month = current_month(datetime.now(UTC))
    others = 300
    with psycopg.connect(catalog_loaded, autocommit=True) as conn:
        # a year of closes of other tenants, long ago, and their subscriptions
        conn.execute(
            """insert into app.finalized_invoices
                   (invoice_id, tenant_id, currency, period_start, period_end,
                    subtotal_minor, tax_minor, total_minor, arrivals_through,
                    subscription_events_through)
               select 'x' || t || '-' || m, 'x' || t, 'usd', s, s + interval '1 month',
                      0, 0, 0, 0, 0
               from generate_series(1, %s) as t, generate_series(0, 11) as m,
                    lateral (select timestamptz '2020-01-01Z' + m * interval '1 month') as p(s)""",
            (others,),
        )
        conn.execute(
            """insert into app.finalized_invoice_lines
                   (invoice_id, line_id, tenant_id, line_type, amount_minor, currency,
                    description, period_start)
               select invoice_id, invoice_id || '-' || k, tenant_id, 'usage', 0, currency,
                      'usage', period_start
               from app.finalized_invoices, generate_series(1, 3) as k
               where tenant_id like 'x%%'"""
        )
        conn.execute(
            """insert into raw.subscription_events
                   (subscription_id, tenant_id, action, plan_key, effective_at, source)
               select 'xs' || t, 'x' || t, 'start', 'starter', timestamptz '2020-01-01Z', 'api'
               from generate_series(1, %s) as t""",
            (others,),
        )
        conn.execute("analyze")
        [own] = conn.execute(
            "select count(*) from raw.subscription_events where tenant_id = 'globex'"
        ).fetchone() or (0,)
        assert own >= 1
        upcoming_invoices(conn, "globex", month)  # prepares the read
        [(name,)] = conn.execute(
            "select name from pg_prepared_statements where statement like %s",
            (f"%{PREVIEW_INVOICES}%",),
        ).fetchall()
        with conn.transaction():
            set_preview(conn, "globex", month)
            plan = explained(conn, f"execute {name}('globex', '{month}')", analyze=True)

    rows: dict[str, list[float]] = {}
    lines_read: list[float] = []
    for node in plan_scans(plan):
        rows.setdefault(node["Relation Name"], []).append(
            node["Actual Rows"] * node["Actual Loops"]
        )
        if node["Relation Name"] == "finalized_invoice_lines":
            removed = node.get("Rows Removed by Filter", 0)
            lines_read.append((node["Actual Rows"] + removed) * node["Actual Loops"])
    assert rows.get("subscription_events"), rows  # read, and by the tenant at the scan
    assert max(rows["subscription_events"]) <= own, rows
    assert max(rows.get("finalized_invoices", [0])) == 0, rows  # globex has none frozen
    assert max(rows.get("closed_months", [0])) <= 12, rows
    # nor lines: not one of the other tenants' 10,800 read and filtered out
    assert max(lines_read, default=0) == 0, lines_read


def test_live_reads_find_the_newest_batch_by_its_index(catalog_loaded: str) -> None:
    """What a daily run has not stored yet is what arrived since its newest batch's horizon,
    which every live read, the upcoming invoice and each daily run's plan look up. Asked as
    `arrival_batch = (select max(...))`, the planner expected half the arrivals to match
    and scanned them from the start for one row (the newest batch lies last: 1M arrivals,
    16,000 pages). It reads the batch index backwards: no scan of the arrivals in the
    pending events' plan is a sequential one."""
    now = datetime.now(UTC).replace(microsecond=0)
    month = current_month(now)
    month_start = datetime.combine(month, datetime.min.time(), UTC)
    insert = """insert into raw.events (tenant_id, metric, amount, event_ts, idempotency_key)
                select 'acme', 'api_calls', 1, %s + (%s - %s) * random(), %s || g
                from generate_series(1, %s) as g"""
    with psycopg.connect(catalog_loaded, autocommit=True) as conn:
        conn.execute(insert, (month_start, now, month_start, "stored-", 3000))
    run_daily(month, now.date(), quiet=True)
    with psycopg.connect(catalog_loaded, autocommit=True) as conn:
        conn.execute(insert, (month_start, now, month_start, "pending-", 10))
        conn.execute("analyze")
        plan = explained(conn, "select * from intermediate.int_events_pending", analyze=True)
        pending = conn.execute("select count(*) from intermediate.int_events_pending").fetchone()
    assert pending == (10,)
    arrivals = [
        node["Node Type"]
        for node in plan_scans(plan)
        if node["Relation Name"] == "int_events_arrivals"
    ]
    assert arrivals, plan  # the arrivals are read, never scanned whole
    assert "Seq Scan" not in arrivals, arrivals


def test_a_live_reads_tenant_reaches_the_events_before_the_ranking(catalog_loaded: str) -> None:
    """The pending events are ranked per key (pending_arrivals), the keys compared byte by
    byte (`collate "C"`, an expression PostgreSQL does not take for the column): the window
    is partitioned by the tenant as it is too, so that a live read's condition on the tenant
    filters the raw events the window sorts, not its output (every tenant's pending events
    ranked for each read)."""
    with psycopg.connect(catalog_loaded, autocommit=True) as conn:
        plan = explained(
            conn, "select * from intermediate.int_events_pending where tenant_id = 'acme'"
        )
    [window] = [node for node in plan_nodes(plan) if node["Node Type"] == "WindowAgg"]
    [events] = [node for node in plan_scans(window) if node["Relation Name"] == "events"]
    conditions = " ".join(str(events.get(key, "")) for key in ("Filter", "Index Cond"))
    assert "tenant_id = 'acme'" in conditions, events
    # the window's input, sorted by the key's bytes
    sort = next(node for node in plan_nodes(window) if node["Node Type"] == "Sort")
    assert sort["Sort Key"][0].endswith('COLLATE "C"'), sort["Sort Key"]
