"""Pricing by dimension through the API and the run sequence: a tenant sends tokens with
its own key (model and direction in the metadata) and reads them per combination, its
subscription moves to another plan mid-month, and a late event reaches a finalized month:
an invoice line per priced combination, the included units prorated per segment, an
adjustment per combination."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from orchestration.pipeline import run_monthly
from tests.ingest.test_subscriptions_and_reads import bearer, tenant_key, with_demo

# a second plan prices by model only; the models it does not list are not billed
FLAT_PLAN = {
    "key": "ai_flat",
    "name": "AI Flat",
    "interval": "month",
    "currency": "usd",
    "charges": [
        {
            "metric": "tokens",
            "group_by": ["model"],
            "model": "not_billed",
            "prices": [{"when": {"model": "large"}, "model": "per_unit", "unit_price": "0.00001"}],
        }
    ],
}


def tokens(key: str, amount: int, day: int, **metadata: str) -> dict[str, Any]:
    return event("tyrell", "tokens", key, amount, day, **metadata)


def event(
    tenant: str, metric: str, key: str, amount: int, day: int, **metadata: str
) -> dict[str, Any]:
    return {
        "tenant_id": tenant,
        "metric": metric,
        "amount": amount,
        "timestamp": datetime(2026, 10, day, 12, tzinfo=UTC).isoformat(),
        "idempotency_key": key,
        "metadata": metadata,
    }


def usage_lines(
    url: str, month: str, tenant: str = "tyrell"
) -> list[tuple[str, int, str, str | None]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """select line_type, amount_minor, description, dimensions
               from marts.fct_invoice_lines
               where tenant_id = %s and period_start = %s::date::timestamptz
               order by line_type, service_start, description""",
            (tenant, month),
        ).fetchall()
    return [(kind, int(amount), text, dims) for kind, amount, text, dims in rows]


def test_tokens_are_billed_per_model_and_direction(
    api: TestClient, catalog_loaded: str, tmp_path: Path
) -> None:
    with_demo(
        tmp_path, plans=[FLAT_PLAN], tenants=[{"id": "tyrell", "name": "Tyrell", "currency": "usd"}]
    )
    # October's history is backdated, so the admin records it; the tenant's key does the rest
    started = api.post(
        "/v1/subscriptions",
        json={"tenant_id": "tyrell", "plan": "ai_usage", "start": "2026-10-01T00:00:00Z"},
    )
    assert started.status_code == 201, started.text
    moved = api.post(
        f"/v1/subscriptions/{started.json()['id']}/change-plan",
        json={"plan": "ai_flat", "at": "2026-10-16T00:00:00Z"},
    )
    assert moved.status_code == 200, moved.text
    key = bearer(tenant_key("tyrell"))
    batch = [
        tokens("t1", 1_000_000, 5, model="large", direction="input"),
        tokens("t2", 100_000, 6, model="large", direction="output"),
        tokens("t3", 1_000_000, 7, model="small", direction="input"),
        tokens("t4", 500_000, 8, model="tiny", direction="output"),  # not listed: the default
        tokens("t4", 500_000, 8, model="tiny", direction="output"),  # a retry: counted once
        tokens("t5", 200_000, 20, model="large", direction="input"),
        tokens("t6", 300_000, 20, model="large", direction="output"),
        tokens("t7", 1_000_000, 21, model="small", direction="input"),  # ai_flat: not billed
    ]
    sent = api.post("/v1/events", json={"events": batch}, headers=key)
    assert sent.status_code == 200, sent.text

    # live usage per combination, with the tenant's key
    by_model = api.get(
        "/v1/usage",
        params={"metric": "tokens", "from": "2026-10-05", "to": "2026-10-20", "group_by": "model"},
        headers=key,
    )
    assert by_model.status_code == 200, by_model.text
    assert [(d["date"], d["dimensions"], d["quantity"]) for d in by_model.json()["days"]] == [
        ("2026-10-05", {"model": "large"}, "1000000"),
        ("2026-10-06", {"model": "large"}, "100000"),
        ("2026-10-07", {"model": "small"}, "1000000"),
        ("2026-10-08", {"model": "tiny"}, "500000"),
        ("2026-10-20", {"model": "large"}, "500000"),
    ]
    total = api.get(
        "/v1/usage",
        params={"metric": "tokens", "from": "2026-10-20", "to": "2026-10-20"},
        headers=key,
    )
    assert [(d["quantity"], d["event_count"]) for d in total.json()["days"]] == [("500000", 2)]
    unknown = api.get(
        "/v1/usage",
        params={"metric": "tokens", "from": "2026-10-01", "to": "2026-10-31", "group_by": "region"},
        headers=key,
    )
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["error"]["details"][0]["field"] == "group_by"

    run_monthly(date(2026, 10, 1), finalize=True, quiet=True)
    large_in = '{"model":"large","direction":"input"}'
    large_out = '{"model":"large","direction":"output"}'
    # Oct 1-16 on ai_usage (15 of 31 days): the base fee and the included million of
    # large input prorated; Oct 16-31 on ai_flat, by model
    assert usage_lines(catalog_loaded, "2026-10-01") == [
        ("base_fee", 968, "AI API: base fee (prorated)", None),
        ("usage", 155, "AI API: tokens, model large, direction input (per_unit)", large_in),
        ("usage", 150, "AI API: tokens, model large, direction output (graduated)", large_out),
        (
            "usage",
            40,
            "AI API: tokens, model small, direction input (per_unit)",
            '{"model":"small","direction":"input"}',
        ),
        (
            "usage",
            20,
            "AI API: tokens, model tiny, direction output (per_unit)",
            '{"model":"tiny","direction":"output"}',
        ),
        ("usage", 500, "AI Flat: tokens, model large (per_unit)", '{"model":"large"}'),
    ]
    with psycopg.connect(catalog_loaded) as conn:
        daily = conn.execute(
            """select usage_date::text, dimensions, quantity from marts.fct_usage_daily
               where tenant_id = 'tyrell' and usage_date = '2026-10-20' order by dimensions"""
        ).fetchall()
    assert daily == [("2026-10-20", large_in, 200_000), ("2026-10-20", large_out, 300_000)]

    # a late large output event of October, after its close: November corrects that
    # combination alone (200,000 tokens of the first tier now: 3.00 instead of 1.50)
    late = api.post(
        "/v1/events",
        json={"events": [tokens("t8", 100_000, 10, model="large", direction="output")]},
        headers=key,
    )
    assert late.status_code == 200, late.text
    run_monthly(date(2026, 11, 1), quiet=True)
    assert usage_lines(catalog_loaded, "2026-11-01") == [
        ("adjustment", 150, f"correction of 2026-10: tokens {large_out}", large_out),
    ]


# card payments at 2.9% + 0.30 (the month's first one free), bank transfers at 0.8% between
# 0.10 and 5.00 a transfer, any other method not billed
PAYMENTS_PLAN = {
    "key": "payments",
    "name": "Payments",
    "interval": "month",
    "currency": "usd",
    "charges": [
        {
            "metric": "payments",
            "group_by": ["method"],
            "model": "not_billed",
            "prices": [
                {
                    "when": {"method": "card"},
                    "model": "percentage",
                    "rate": "0.029",
                    "fixed_fee": "0.30",
                    "free_units": 1,
                },
                {
                    "when": {"method": "bank"},
                    "model": "percentage",
                    "rate": "0.008",
                    "min_per_event": "0.10",
                    "max_per_event": "5.00",
                },
            ],
        }
    ],
}


def test_payments_are_billed_a_percentage_per_event(
    api: TestClient, catalog_loaded: str, tmp_path: Path
) -> None:
    with_demo(
        tmp_path,
        metrics=[{"key": "payments", "aggregation": "sum", "dimensions": ["method"]}],
        plans=[PAYMENTS_PLAN],
        tenants=[{"id": "wayne", "name": "Wayne", "currency": "usd"}],
    )
    started = api.post(
        "/v1/subscriptions",
        json={"tenant_id": "wayne", "plan": "payments", "start": "2026-10-01T00:00:00Z"},
    )
    assert started.status_code == 201, started.text
    batch = [
        event("wayne", "payments", "p1", 100, 2, method="card"),  # the free one
        event("wayne", "payments", "p2", 50, 3, method="card"),  # 1.45 + 0.30
        event("wayne", "payments", "p3", 10, 4, method="card"),  # 0.29 + 0.30
        event("wayne", "payments", "p4", 1000, 5, method="bank"),  # 8.00, at most 5.00
        event("wayne", "payments", "p5", 5, 6, method="bank"),  # 0.04, at least 0.10
        event("wayne", "payments", "p6", 100, 7, method="crypto"),  # not billed
    ]
    sent = api.post("/v1/events", json={"events": batch}, headers=bearer(tenant_key("wayne")))
    assert sent.status_code == 200, sent.text
    run_monthly(date(2026, 10, 1), quiet=True)
    assert usage_lines(catalog_loaded, "2026-10-01", "wayne") == [
        ("usage", 510, "Payments: payments, method bank (percentage)", '{"method":"bank"}'),
        ("usage", 234, "Payments: payments, method card (percentage)", '{"method":"card"}'),
    ]
