"""Subscription endpoints into the billing engine, and tenant reads kept to their tenant."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient

from billing.cli import main
from ingest.app import create_app
from orchestration.pipeline import run_daily, run_dbt, run_monthly
from tests.helpers import REPO
from warehouse.settings import get_settings


def build_engine_intervals() -> None:
    """The engine's subscription intervals (a view a daily run builds; `billing db up` does
    not): what the billing runs read of the history, queried as it is now."""
    run_dbt(["run", "--select", "int_subscription_intervals"], quiet=True)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def tenant_key(tenant: str) -> str:
    result = CliRunner().invoke(main, ["apikey", "create", "--tenant", tenant])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


def with_demo(
    tmp_path: Path,
    *,
    metrics: Sequence[dict[str, Any]] = (),
    plans: Sequence[dict[str, Any]] = (),
    tenants: Sequence[dict[str, Any]] = (),
    subscriptions: Sequence[dict[str, Any]] = (),
) -> None:
    """Apply the demo catalog with more metrics, plans, tenants and subscriptions."""
    doc = yaml.safe_load((REPO / "examples" / "demo_catalog.yaml").read_text())
    doc["metrics"] += list(metrics)
    doc["plans"] += list(plans)
    doc["tenants"] += list(tenants)
    doc["subscriptions"] += list(subscriptions)
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(main, ["catalog", "apply", str(path)])
    assert result.exit_code == 0, result.output


def test_create_upgrade_cancel_bills_prorated_segments(
    api: TestClient, catalog_loaded: str, tmp_path: Path
) -> None:
    with_demo(tmp_path, tenants=[{"id": "hooli", "name": "Hooli", "currency": "usd"}])
    created = api.post(
        "/v1/subscriptions",
        json={"tenant_id": "hooli", "plan": "starter", "start": "2026-09-01T00:00:00Z"},
    )
    assert created.status_code == 201, created.text
    sub = created.json()["id"]
    upgraded = api.post(
        f"/v1/subscriptions/{sub}/change-plan", json={"plan": "pro", "at": "2026-09-16T00:00:00Z"}
    )
    assert upgraded.status_code == 200, upgraded.text
    assert upgraded.json()["plan"] == "pro"
    cancelled = api.post(
        f"/v1/subscriptions/{sub}/cancel",
        json={"at_period_end": False, "at": "2026-09-24T00:00:00Z"},
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "canceled"
    assert [h["action"] for h in cancelled.json()["history"]] == ["start", "change_plan", "cancel"]

    run_monthly(date(2026, 9, 1), quiet=True)
    with psycopg.connect(catalog_loaded) as conn:
        lines = conn.execute(
            """select plan, quantity, amount_minor from marts.fct_invoice_lines
               where tenant_id = 'hooli' and line_type = 'base_fee'
                 and period_start = '2026-09-01' order by service_start"""
        ).fetchall()
    # starter 19.00 for 15 of 30 days, pro 49.00 for 8 of 30 days
    assert [(plan, amount) for plan, _, amount in lines] == [("starter", 950), ("pro", 1307)]
    assert lines[0][1] == Decimal(15) / 30
    assert abs(lines[1][1] - Decimal(8) / 30) < Decimal("1e-12")


def test_subscriptions_are_a_state_machine(
    api: TestClient, catalog_loaded: str, tmp_path: Path
) -> None:
    acme = bearer(tenant_key("acme"))
    # one subscription per tenant at a time: a second one is a conflict naming the first
    for headers in (acme, {}):
        second = api.post(
            "/v1/subscriptions", json={"tenant_id": "acme", "plan": "starter"}, headers=headers
        )
        assert second.status_code == 409, second.text
        assert "sub_acme" in second.json()["error"]["message"]
        assert second.json()["error"]["details"][0]["field"] == "tenant_id"

    # a tenant key acts from now on: backdating is the admin's
    past = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    backdated = {
        "at": api.post(
            "/v1/subscriptions/sub_acme/cancel",
            json={"at_period_end": False, "at": past},
            headers=acme,
        ),
        "at ": api.post(
            "/v1/subscriptions/sub_acme/change-plan",
            json={"plan": "starter", "at": past},
            headers=acme,
        ),
    }
    for field, response in backdated.items():
        assert response.status_code == 403, response.text
        assert response.json()["error"]["details"][0]["field"] == field.strip()
        assert "admin" in response.json()["error"]["message"]

    # a move scheduled next month, then "cancel now": the move is dropped
    now = datetime.now(UTC)
    next_month = (now.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0)
    scheduled = api.post(
        "/v1/subscriptions/sub_acme/change-plan",
        json={"plan": "starter", "at": (next_month + timedelta(days=3)).isoformat()},
        headers=acme,
    )
    assert scheduled.status_code == 200, scheduled.text
    cancelled = api.post(
        "/v1/subscriptions/sub_acme/cancel", json={"at_period_end": False}, headers=acme
    )
    assert cancelled.status_code == 200, cancelled.text
    state = cancelled.json()
    assert state["status"] == "canceled" and state["plan"] == "pro"
    assert (state["current_plan"], state["next_change"]) == (None, None)  # ended, move dropped
    assert [(h["action"], h["dropped"]) for h in state["history"]] == [
        ("start", False),
        ("cancel", False),
        ("change_plan", True),
    ]
    # nothing changes after a cancel, whoever asks
    for headers in (acme, {}):
        for path, body in (
            ("cancel", {"at_period_end": True}),
            ("change-plan", {"plan": "starter"}),
        ):
            after = api.post(f"/v1/subscriptions/sub_acme/{path}", json=body, headers=headers)
            assert after.status_code == 409, after.text
    # the engine bills no plan after the cancellation, and quotas find none then either
    run_monthly(next_month.date(), quiet=True)
    with psycopg.connect(catalog_loaded) as conn:
        billed = conn.execute(
            """select count(*) from marts.fct_invoice_lines
               where tenant_id = 'acme' and period_start = %s""",
            (next_month,),
        ).fetchone()
        quota_plan = conn.execute(
            "select app.plan_at('acme', %s)", (next_month + timedelta(days=10),)
        ).fetchone()
    assert billed == (0,)
    assert quota_plan == (None,)

    # a tenant whose subscription ended may start again, from its end on
    again = api.post("/v1/subscriptions", json={"tenant_id": "acme", "plan": "starter"})
    assert again.status_code == 201, again.text

    # the catalog goes through the same rule
    doc = yaml.safe_load((REPO / "examples" / "demo_catalog.yaml").read_text())
    doc["subscriptions"].append(
        {
            "id": "sub_globex_2",
            "tenant_id": "globex",
            "plan": "pro",
            "start": "2026-11-01T00:00:00Z",
        }
    )
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(doc))
    applied = CliRunner().invoke(main, ["catalog", "apply", str(path)])
    assert applied.exit_code != 0
    assert "subscriptions[5].tenant_id" in applied.output and "sub_globex" in applied.output


def test_a_subscription_not_started_yet_is_moved_or_cancelled_before_it_runs(
    api: TestClient, catalog_loaded: str
) -> None:
    """A tenant that scheduled its subscription to start next month could neither cancel it
    (422: "before the subscription started") nor start another now (409: "cancel it
    first") until that month came. A change asked before the start takes effect at the
    start; a cancel then means the subscription never runs, and bills nothing."""
    acme = bearer(tenant_key("acme"))
    ended = api.post("/v1/subscriptions/sub_acme/cancel", json={"at_period_end": False})
    assert ended.status_code == 200, ended.text
    now = datetime.now(UTC)
    next_month = (now.replace(day=1) + timedelta(days=32)).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    scheduled = api.post(
        "/v1/subscriptions",
        json={"tenant_id": "acme", "plan": "pro", "start": next_month.isoformat()},
        headers=acme,
    )
    assert scheduled.status_code == 201, scheduled.text
    path = f"/v1/subscriptions/{scheduled.json()['id']}"

    def effective(state: dict[str, Any]) -> list[tuple[str, str | None, datetime]]:
        return [
            (h["action"], h["plan"], datetime.fromisoformat(h["effective_at"]))
            for h in state["history"]
        ]

    moved = api.post(f"{path}/change-plan", json={"plan": "starter"}, headers=acme)
    assert moved.status_code == 200, moved.text
    assert effective(moved.json())[-1] == ("change_plan", "starter", next_month)
    assert moved.json()["current_plan"] is None  # not started: it starts on starter
    assert moved.json()["next_change"]["plan"] == "starter"
    cancelled = api.post(f"{path}/cancel", json={"at_period_end": True}, headers=acme)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "canceled"
    assert datetime.fromisoformat(cancelled.json()["ends_at"]) == next_month  # never runs
    assert effective(cancelled.json())[-1] == ("cancel", None, next_month)

    again = api.post(
        "/v1/subscriptions", json={"tenant_id": "acme", "plan": "ai_usage"}, headers=acme
    )
    assert again.status_code == 201, again.text
    build_engine_intervals()
    with psycopg.connect(catalog_loaded) as conn:
        plan = conn.execute(  # what quotas read
            "select app.plan_at('acme', %s)", (next_month + timedelta(days=10),)
        ).fetchone()
        intervals = conn.execute(  # the engine's: the one scheduled has none
            """select subscription_id, plan_key from intermediate.int_subscription_intervals
               where tenant_id = 'acme' and valid_to > %s""",
            (now,),
        ).fetchall()
    assert plan == ("ai_usage",)
    assert intervals == [(again.json()["id"], "ai_usage")]

    # the tenant reads back what each change answered: one subscription, and all of its own
    # by their start (the one it ended, the one running, the one that never runs)
    assert api.get(path, headers=acme).json() == cancelled.json()
    listed = api.get("/v1/subscriptions", headers=acme)
    assert listed.status_code == 200, listed.text
    assert listed.json()["tenant_id"] == "acme"
    states = {s["id"]: s for s in listed.json()["subscriptions"]}
    assert list(states) == ["sub_acme", again.json()["id"], scheduled.json()["id"]]
    assert states[again.json()["id"]] == again.json()
    assert states[scheduled.json()["id"]] == cancelled.json()
    assert [s["current_plan"] for s in states.values()] == [None, "ai_usage", None]
    assert api.get("/v1/subscriptions", params={"tenant_id": "acme"}).json() | {
        "as_of": None
    } == listed.json() | {"as_of": None}  # the admin names the tenant


def test_a_change_is_checked_against_the_plan_in_effect_when_it_takes_effect(
    api: TestClient, catalog_loaded: str
) -> None:
    """acme, on pro, schedules a move to starter next month. Asking to stay on pro now was
    recorded as a move from pro to pro (the month split in two, each part priced on its
    own) and left the move in place; asking for starter now was refused as "on 'starter'
    already". A change is checked against the plan in effect when it takes effect."""
    acme = bearer(tenant_key("acme"))
    path = "/v1/subscriptions/sub_acme/change-plan"
    now = datetime.now(UTC)
    next_month = (now.replace(day=1) + timedelta(days=32)).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    move = {"plan": "starter", "at": next_month.isoformat()}
    moved = api.post(path, json=move, headers=acme)
    assert moved.status_code == 200, moved.text
    # the answer tells the plan now from the one scheduled
    assert moved.json()["current_plan"] == "pro"
    assert moved.json()["plan"] == "starter"
    scheduled = moved.json()["next_change"]
    assert scheduled["plan"] == "starter"
    assert datetime.fromisoformat(scheduled["at"]) == next_month

    same = api.post(path, json={"plan": "pro"}, headers=acme)
    assert same.status_code == 422, same.text
    assert same.json()["error"]["details"][0]["field"] == "plan"
    assert "'starter'" in same.json()["error"]["message"]  # the move, and when to undo it
    assert next_month.isoformat() in same.json()["error"]["message"]

    # staying on pro: pro from the moment the move was scheduled for, one interval
    kept = api.post(path, json={"plan": "pro", "at": next_month.isoformat()}, headers=acme)
    assert kept.status_code == 200, kept.text
    assert kept.json()["plan"] == "pro"
    # the move and the move back at the same time move nothing
    assert (kept.json()["current_plan"], kept.json()["next_change"]) == ("pro", None)

    build_engine_intervals()

    def intervals() -> list[tuple[str, datetime]]:
        with psycopg.connect(catalog_loaded) as conn:
            return conn.execute(  # the engine's
                """select plan_key, valid_from from intermediate.int_subscription_intervals
                   where subscription_id = 'sub_acme' order by valid_from"""
            ).fetchall()

    assert intervals() == [("pro", datetime(2026, 1, 1, tzinfo=UTC))]

    # the move scheduled again, then asked for now: it is made now
    assert api.post(path, json=move, headers=acme).status_code == 200
    sooner = api.post(path, json={"plan": "starter"}, headers=acme)
    assert sooner.status_code == 200, sooner.text
    [(first, start), (second, moved_at)] = intervals()
    assert (first, start, second) == ("pro", datetime(2026, 1, 1, tzinfo=UTC), "starter")
    assert now <= moved_at < next_month


def test_a_move_undone_bills_as_if_never_asked(
    api: TestClient, catalog_loaded: str, tmp_path: Path
) -> None:
    """hooli moves to starter on the 16th, then keeps pro after all (pro from the 16th);
    pied stays on pro. The same usage bills the same lines: one pro segment for the month,
    its included calls whole, where two pro segments each took half of them."""
    tenants = ("hooli", "pied")
    with_demo(tmp_path, tenants=[{"id": t, "name": t, "currency": "usd"} for t in tenants])
    for tenant in tenants:
        created = api.post(
            "/v1/subscriptions",
            json={"tenant_id": tenant, "plan": "pro", "start": "2026-09-01T00:00:00Z",
                  "id": f"sub_{tenant}"},
        )  # fmt: skip
        assert created.status_code == 201, created.text
    for plan in ("starter", "pro"):
        changed = api.post(
            "/v1/subscriptions/sub_hooli/change-plan",
            json={"plan": plan, "at": "2026-09-16T00:00:00Z"},
        )
        assert changed.status_code == 200, changed.text
    sent = api.post(
        "/v1/events",
        json={
            "events": [
                {"tenant_id": tenant, "metric": "api_calls", "amount": 150_000,
                 "timestamp": "2026-09-02T10:00:00Z", "idempotency_key": f"{tenant}-1"}
                for tenant in tenants
            ]
        },
    )  # fmt: skip
    assert sent.status_code == 200, sent.text

    run_monthly(date(2026, 9, 1), quiet=True)
    with psycopg.connect(catalog_loaded) as conn:
        lines = {
            tenant: conn.execute(
                """select line_type, plan, metric, quantity, amount_minor
                   from marts.fct_invoice_lines
                   where tenant_id = %s and period_start = '2026-09-01'
                   order by line_type, metric""",
                (tenant,),
            ).fetchall()
            for tenant in tenants
        }
    assert lines["hooli"] == lines["pied"]
    # 49.00, then 50,000 calls past the 100,000 included at 0.0004
    assert [(t, m, a) for t, _, m, _, a in lines["pied"] if a] == [
        ("base_fee", None, 4900),
        ("usage", "api_calls", 2000),
    ]


def test_subscription_changes_are_checked(api: TestClient) -> None:
    bad = {
        "plan": api.post("/v1/subscriptions", json={"tenant_id": "acme", "plan": "nope"}),
        "tenant_id": api.post("/v1/subscriptions", json={"tenant_id": "who", "plan": "pro"}),
        "start": api.post(
            "/v1/subscriptions", json={"tenant_id": "acme", "plan": "pro", "start": "2026-09-01"}
        ),
    }
    for field, response in bad.items():
        assert response.status_code == 422, (field, response.text)
        assert field in [d["field"] for d in response.json()["error"]["details"]]
    # times whose month, or UTC, the calendar cannot hold (a 500 before, or a time in 1 BC)
    at_the_ends = {
        "start": api.post(
            "/v1/subscriptions",
            json={"tenant_id": "hooli", "plan": "pro", "start": "0001-01-01T00:00:00+05:00"},
        ),
        "at": api.post(
            "/v1/subscriptions/sub_acme/cancel",
            json={"at_period_end": True, "at": "9999-12-15T00:00:00Z"},
        ),
        "at ": api.post(
            "/v1/subscriptions/sub_acme/change-plan",
            json={"plan": "starter", "at": "9999-12-31T23:59:59Z"},
        ),
        "granted_at": api.post(
            "/v1/credits",
            json={"tenant_id": "acme", "amount": "5.00", "granted_at": "0001-01-01T00:00:00+01:00"},
        ),
    }
    for field, response in at_the_ends.items():
        assert response.status_code == 422, (field, response.text)
        assert field.strip() in [d["field"] for d in response.json()["error"]["details"]]
    # a jpy plan for a usd tenant
    mismatch = api.post("/v1/subscriptions", json={"tenant_id": "acme", "plan": "team_jp"})
    assert mismatch.status_code == 422
    assert "currency mismatch" in mismatch.json()["error"]["message"]
    assert (
        api.post("/v1/subscriptions/sub_nope/cancel", json={"at_period_end": True}).status_code
        == 404
    )
    ended = api.post("/v1/subscriptions/sub_acme/cancel", json={"at_period_end": True})
    assert ended.status_code == 200
    again = api.post("/v1/subscriptions/sub_acme/change-plan", json={"plan": "starter"})
    assert again.status_code == 409
    duplicate = api.post(
        "/v1/subscriptions", json={"tenant_id": "acme", "plan": "pro", "id": "sub_acme"}
    )
    assert duplicate.status_code == 409


def test_live_usage_includes_events_sent_a_moment_ago_and_matches_dbt(
    api: TestClient, catalog_loaded: str
) -> None:
    key = tenant_key("acme")
    now = datetime.now(UTC).replace(microsecond=0)
    today, yesterday = now.date(), now.date() - timedelta(days=1)
    stamp_y = datetime.combine(yesterday, datetime.min.time(), UTC) + timedelta(hours=12)

    def send(events: list[dict[str, Any]]) -> None:
        response = api.post("/v1/events", json={"events": events}, headers=bearer(key))
        assert response.status_code == 200, response.text

    def ev(key_: str, metric: str, amount: Any, at: datetime, **meta: Any) -> dict[str, Any]:
        body = {
            "tenant_id": "acme",
            "metric": metric,
            "amount": amount,
            "timestamp": at.isoformat(),
            "idempotency_key": key_,
        }
        return body | ({"metadata": meta} if meta else {})

    send([ev("a1", "api_calls", 5, stamp_y), ev("a2", "api_calls", "2.5", now)])
    usage = api.get(
        "/v1/usage",
        params={"metric": "api_calls", "from": str(yesterday), "to": str(today)},
        headers=bearer(key),
    )
    assert usage.status_code == 200, usage.text
    assert [(d["date"], d["quantity"]) for d in usage.json()["days"]] == [
        (str(yesterday), "5"),
        (str(today), "2.5"),
    ]

    run_daily(yesterday, today, quiet=True)
    # after the dbt run: a retry of a1 (not counted again), new events of every aggregation
    send(
        [
            ev("a1", "api_calls", 5, stamp_y),
            ev("a3", "api_calls", 1, now),
            ev("u1", "active_users", 1, now, user_id="x"),
            ev("u2", "active_users", 1, now, user_id="x"),
            ev("u3", "active_users", 1, now, user_id="y"),
            ev("s1", "storage_gb", 40, stamp_y),
            ev("s2", "storage_gb", 30, stamp_y + timedelta(minutes=1)),
            ev("b1", "builds", 1, now),
            ev("t1", "seats", 7, stamp_y),
            ev("t2", "seats", 4, stamp_y + timedelta(hours=1)),
        ]
    )
    metrics = ["api_calls", "active_users", "storage_gb", "builds", "seats"]

    def live() -> dict[tuple[str, str], tuple[Decimal, int]]:
        found = {}
        for metric in metrics:
            response = api.get(
                "/v1/usage",
                params={"metric": metric, "from": str(yesterday), "to": str(today)},
                headers=bearer(key),
            )
            for d in response.json()["days"]:
                found[(metric, d["date"])] = (Decimal(d["quantity"]), d["event_count"])
        return found

    before_dbt = live()
    assert before_dbt[("api_calls", str(yesterday))] == (Decimal(5), 1)
    assert before_dbt[("api_calls", str(today))] == (Decimal("3.5"), 2)
    assert before_dbt[("active_users", str(today))] == (Decimal(2), 3)
    assert before_dbt[("storage_gb", str(yesterday))] == (Decimal(40), 2)
    assert before_dbt[("seats", str(yesterday))] == (Decimal(4), 2)
    run_daily(yesterday, today, quiet=True)
    with psycopg.connect(catalog_loaded) as conn:
        marts = {
            (metric, str(day)): (quantity, count)
            for metric, day, quantity, count in conn.execute(
                """select metric, usage_date, quantity, event_count from marts.fct_usage_daily
                   where tenant_id = 'acme' and usage_date >= %s""",
                (yesterday,),
            )
        }
    assert live() == before_dbt == marts


def test_live_usage_on_a_bare_warehouse_waits_for_db_up(
    empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An API started on a warehouse that `billing db up` never set up stores events and
    says what is missing for live reads (503 in the error shape, quota checks too); after
    `billing db up` the reads count what was stored before, no daily run needed."""
    monkeypatch.setenv("BILLING_ADMIN_KEY", "bare-admin")
    get_settings.cache_clear()
    catalog = CliRunner().invoke(
        main, ["catalog", "apply", str(REPO / "examples" / "demo_catalog.yaml")]
    )
    assert catalog.exit_code == 0, catalog.output
    now = datetime.now(UTC)
    usage = {
        "tenant_id": "acme",
        "metric": "api_calls",
        "from": str(now.date()),
        "to": str(now.date()),
    }
    check = {"tenant_id": "acme", "metric": "api_calls", "amount": "1"}
    with TestClient(create_app(), headers=bearer("bare-admin")) as api:
        stored = api.post(
            "/v1/events",
            json={
                "events": [
                    {
                        "tenant_id": "acme",
                        "metric": "api_calls",
                        "amount": "2.5",
                        "timestamp": now.isoformat(),
                        "idempotency_key": key,
                    }
                    for key in ("b1", "b2", "b1")
                ]
            },
        )
        assert stored.status_code == 200, stored.text
        for response in (
            api.get("/v1/usage", params=usage),
            api.post("/v1/quotas/check", json=check),
        ):
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["code"] == "live_usage_not_built"
            assert "billing db up" in error["message"]
        # what else `billing db up` builds: each read says what is missing and what builds
        # it; the invoices are the monthly run's (none yet)
        reads = {
            "/v1/invoices/upcoming": "upcoming_invoice_not_built",
            "/v1/credits": "not_built",
        }
        for path, code in reads.items():
            response = api.get(path, params={"tenant_id": "acme"})
            assert response.status_code == 503, (path, response.text)
            assert response.json()["error"]["code"] == code
            assert "run `billing db up`" in response.json()["error"]["message"]
        assert api.get("/v1/invoices", params={"tenant_id": "acme"}).json() == {"invoices": []}
        up = CliRunner().invoke(main, ["db", "up"])
        assert up.exit_code == 0, up.output
        days = api.get("/v1/usage", params=usage).json()["days"]
        assert [(Decimal(d["quantity"]), d["event_count"]) for d in days] == [(Decimal(5), 2)]
        assert api.post("/v1/quotas/check", json=check).status_code == 200
        for path in reads:
            assert api.get(path, params={"tenant_id": "acme"}).status_code == 200, path
    again = CliRunner().invoke(main, ["db", "up"])  # built once: the views are left alone
    assert again.exit_code == 0, again.output


def test_reads_are_kept_to_the_callers_tenant(api: TestClient, catalog_loaded: str) -> None:
    run_monthly(date(2026, 10, 1), quiet=True)
    acme = bearer(tenant_key("acme"))
    mine = api.get("/v1/invoices", headers=acme)
    assert mine.status_code == 200
    invoices = mine.json()["invoices"]
    assert invoices and {i["tenant_id"] for i in invoices} == {"acme"}
    assert all(invoice["lines"] for invoice in invoices)
    assert api.get("/v1/invoices", params={"month": "2026-10"}).json()["invoices"]  # admin: all
    assert len({i["tenant_id"] for i in api.get("/v1/invoices").json()["invoices"]}) > 1

    usage = {"metric": "api_calls", "from": "2026-10-01", "to": "2026-10-31"}
    forbidden = [
        api.get("/v1/invoices", params={"tenant_id": "globex"}, headers=acme),
        api.get("/v1/usage", params=usage | {"tenant_id": "globex"}, headers=acme),
        api.post("/v1/subscriptions/sub_globex/cancel", json={"at_period_end": True}, headers=acme),
        api.post("/v1/subscriptions/sub_globex/change-plan", json={"plan": "pro"}, headers=acme),
        api.post("/v1/subscriptions", json={"tenant_id": "globex", "plan": "pro"}, headers=acme),
        api.get("/v1/subscriptions/sub_globex", headers=acme),
        api.get("/v1/subscriptions", params={"tenant_id": "globex"}, headers=acme),
    ]
    for response in forbidden:
        assert response.status_code == 403, response.text
    # whatever else is asked, a tenant key reads its own tenant only
    for params in ({"tenant_id": "acme"}, {"month": "2026-10"}, {"tenant_id": "ACME"}):
        response = api.get("/v1/invoices", params=params, headers=acme)
        assert response.status_code in (200, 403)
        if response.status_code == 200:
            assert {i["tenant_id"] for i in response.json()["invoices"]} <= {"acme"}
    for path in ("/v1/usage", "/v1/subscriptions"):  # the admin must name the tenant
        missing = api.get(path, params=usage)
        assert missing.status_code == 422, (path, missing.text)
        assert missing.json()["error"]["details"][0]["field"] == "tenant_id"
    unknown = api.get("/v1/subscriptions/sub_nobody", headers=acme)
    assert unknown.status_code == 404 and "'sub_nobody'" in unknown.json()["error"]["message"]
    # a tenant the catalog does not have, named by the admin, is a 404 naming tenant_id: an
    # empty list read as "no invoices" (its usage reads on: its events are stored)
    for path in (
        "/v1/invoices",
        "/v1/invoices/upcoming",
        "/v1/credits",
        "/v1/alerts",
        "/v1/subscriptions",
    ):
        unknown = api.get(path, params={"tenant_id": "acmee"})
        assert unknown.status_code == 404, (path, unknown.text)
        assert unknown.json()["error"]["details"][0]["field"] == "tenant_id"
        assert "'acmee'" in unknown.json()["error"]["message"]
    assert api.get("/v1/usage", params=usage | {"tenant_id": "acmee"}).json()["days"] == []
    assert api.get("/v1/usage", params=usage | {"tenant_id": "globex"}).status_code == 200
    assert api.get("/v1/usage", params=usage, headers={}).status_code == 422
    assert (
        api.get("/v1/usage", params=usage, headers={"Authorization": "Bearer x"}).status_code == 401
    )
    # a day as the OpenAPI document says it (not every form date.fromisoformat takes)
    for day in ("2026-13-01", "20261001", "2026-W40-1", "0000-01-01"):
        bad = api.get("/v1/usage", params=usage | {"from": day}, headers=acme)
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "from"
