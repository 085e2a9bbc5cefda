"""Exactly once, forever: concurrent clients retrying random subsets count each event once;
a reused key with a different payload is a conflict; a killed server loses no acknowledged
batch, and resending the rest completes the set without double counting."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from orchestration.pipeline import run_dbt
from tests.helpers import ApiServer
from tests.ingest.conftest import ADMIN_KEY

pytestmark = pytest.mark.slow
HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}


def make_events(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    tenants = ["acme", "globex", "initech", "umbrella"]
    return [
        {
            "tenant_id": tenants[i % 4],
            "metric": "api_calls",
            "amount": str(rng.randrange(1, 1000)),
            "timestamp": f"2026-10-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
            "idempotency_key": f"evt-{i}",
        }
        for i in range(n)
    ]


def dedup_totals(url: str) -> tuple[int, Decimal]:
    run_dbt(["build", "--select", "+int_events_deduplicated", "fct_event_conflicts"], quiet=True)
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select count(*), coalesce(sum(amount), 0) from intermediate.int_events_deduplicated"
        ).fetchone()
    assert row is not None
    return int(row[0]), Decimal(row[1])


def test_eight_concurrent_clients_retrying_count_each_event_once(
    server: ApiServer, catalog_loaded: str
) -> None:
    events = make_events(10_000)
    expected_total = sum(Decimal(e["amount"]) for e in events)

    def client(worker: int) -> int:
        rng = random.Random(worker)
        sent = 0
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=60) as http:
            # every client sends its share, then retries random subsets of everything
            mine = events[worker::8]
            rounds = [mine] + [rng.sample(events, rng.randrange(100, 2000)) for _ in range(3)]
            for batch in rounds:
                for start in range(0, len(batch), 500):
                    chunk = batch[start : start + 500]
                    response = http.post("/v1/events", json={"events": chunk})
                    assert response.status_code == 200, response.text
                    sent += len(chunk)
        return sent

    with ThreadPoolExecutor(8) as pool:
        sent = sum(pool.map(client, range(8)))
    assert sent > 10_000
    with psycopg.connect(catalog_loaded) as conn:
        raw_rows = conn.execute("select count(*) from raw.events").fetchone()
    assert raw_rows == (sent,)  # every retry landed in raw...
    assert dedup_totals(catalog_loaded) == (10_000, expected_total)  # ...and counts once


def test_same_key_different_payload_first_received_wins(
    server: ApiServer, catalog_loaded: str
) -> None:
    first = make_events(1)[0]
    second = {**first, "amount": "999999"}
    with httpx.Client(base_url=server.url, headers=HEADERS) as http:
        assert http.post("/v1/events", json={"events": [first]}).status_code == 200
        assert http.post("/v1/events", json={"events": [second]}).status_code == 200
        assert http.post("/v1/events", json={"events": [first]}).status_code == 200  # retry
    assert dedup_totals(catalog_loaded) == (1, Decimal(first["amount"]))
    with psycopg.connect(catalog_loaded) as conn:
        conflicts = conn.execute(
            "select tenant_id, idempotency_key, kept_amount, conflicting_amount "
            "from marts.fct_event_conflicts"
        ).fetchall()
    assert conflicts == [("acme", "evt-0", Decimal(first["amount"]), Decimal("999999"))]


def test_killed_server_loses_no_acknowledged_batch(catalog_loaded: str) -> None:
    events = make_events(20_000, seed=2)
    batches = [events[i : i + 200] for i in range(0, len(events), 200)]
    env = {"BILLING_DATABASE_URL": catalog_loaded, "BILLING_ADMIN_KEY": ADMIN_KEY}
    server = ApiServer(env).start()
    acknowledged: set[int] = set()
    halfway = threading.Event()

    def stream() -> None:
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=10) as http:
            for number, batch in enumerate(batches):
                if number == len(batches) // 3:
                    halfway.set()
                try:
                    response = http.post("/v1/events", json={"events": batch})
                except httpx.HTTPError:
                    continue  # the server is gone: this batch and the rest are unacknowledged
                if response.status_code == 200:
                    acknowledged.add(number)

    sender = threading.Thread(target=stream)
    sender.start()
    assert halfway.wait(120)
    server.kill()  # SIGKILL in the middle of the stream
    sender.join(300)
    assert 0 < len(acknowledged) < len(batches)

    with psycopg.connect(catalog_loaded) as conn:
        keys = {r[0] for r in conn.execute("select idempotency_key from raw.events")}
    for number in acknowledged:
        assert {e["idempotency_key"] for e in batches[number]} <= keys, number

    # resend everything not acknowledged, to a restarted server
    server = ApiServer(env).start()
    try:
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=60) as http:
            for number, batch in enumerate(batches):
                if number not in acknowledged:
                    assert http.post("/v1/events", json={"events": batch}).status_code == 200
    finally:
        server.stop()
    expected_total = sum(Decimal(e["amount"]) for e in events)
    assert dedup_totals(catalog_loaded) == (20_000, expected_total)
