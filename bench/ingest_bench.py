"""Ingest throughput: events per second through `billing serve` (HTTP, validation, COPY,
durable commit) against a bare COPY of the same rows from Python with a commit per batch,
measured in one run, at each batch size clients send (100, 1,000 and 10,000 events), each
with the cores the hypervisor took meanwhile (steal time, bench.common.hypervisor_steal).

    .venv/bin/python -m bench.ingest_bench --events 500000 --batches 100 1000 10000
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

import psycopg

from bench.common import (
    REPO,
    Steal,
    api_server,
    hypervisor_steal,
    scratch_warehouse,
    stolen_text,
)

ADMIN_KEY = "bench-admin-key"
# the batch sizes clients send: the middleware's and small scripts', the client's default,
# bulk loads
BATCHES = (100, 1_000, 10_000)


@dataclass
class IngestResult:
    events: int
    batch_size: int
    workers: int
    connections: int
    http_seconds: float
    http_events_per_s: float
    copy_seconds: float
    copy_events_per_s: float
    ratio: float
    # the cores the hypervisor took on average meanwhile (bench.common.Steal)
    http_steal_cores: float | None
    copy_steal_cores: float | None


def generate(n: int, seed: int = 42, prefix: str = "bench") -> list[dict[str, object]]:
    """Realistic events: skewed tenants, five metrics, metadata on some, one month."""
    rng = random.Random(seed)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    metrics = ["api_calls", "api_calls", "api_calls", "builds", "storage_gb", "active_users"]
    events = []
    for i in range(n):
        tenant = f"tenant_{int(rng.paretovariate(1.2)) % 10_000}"
        metric = rng.choice(metrics)
        event: dict[str, object] = {
            "tenant_id": tenant,
            "metric": metric,
            "amount": str(rng.randrange(1, 500)),
            "timestamp": (start + timedelta(seconds=rng.randrange(31 * 86400))).isoformat(),
            "idempotency_key": f"{prefix}-{i}",
        }
        if metric == "active_users":
            event["metadata"] = {"user_id": f"u{rng.randrange(5000)}"}
        events.append(event)
    return events


def bare_copy(url: str, events: list[dict[str, object]], batch: int) -> tuple[float, Steal]:
    """The floor: the same rows COPYed from Python, a commit per batch; its seconds and
    what the hypervisor took meanwhile."""
    rows = [
        (
            e["tenant_id"],
            e["metric"],
            Decimal(str(e["amount"])),
            datetime.fromisoformat(str(e["timestamp"])),
            e["idempotency_key"],
            json.dumps(e["metadata"]) if "metadata" in e else None,
        )
        for e in events
    ]
    with psycopg.connect(url) as conn:
        conn.execute("create schema if not exists bench")
        conn.execute("drop table if exists bench.bare_events")
        conn.execute("create table bench.bare_events (like raw.events including all)")
        conn.commit()
        with hypervisor_steal() as steal:
            started = time.perf_counter()
            for offset in range(0, len(rows), batch):
                with (
                    conn.cursor() as cur,
                    cur.copy(
                        "copy bench.bare_events (tenant_id, metric, amount, event_ts,"
                        " idempotency_key, metadata) from stdin"
                    ) as copy,
                ):
                    for row in rows[offset : offset + batch]:
                        copy.write_row(row)
                conn.commit()
            elapsed = time.perf_counter() - started
        conn.execute("drop table bench.bare_events")
    return elapsed, steal


def send_all(url: str, bodies: list[bytes], connections: int) -> float:
    parsed = urlparse(url)
    queue = list(enumerate(bodies))
    lock = threading.Lock()
    failures: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=120)
        headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}
        while True:
            with lock:
                if not queue:
                    break
                _, body = queue.pop()
            conn.request("POST", "/v1/events", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                failures.append(f"{response.status}: {payload[:200]!r}")
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} batches failed, e.g. {failures[0]}")
    return elapsed


def run(
    events_n: int, batches: tuple[int, ...], workers: int, connections: int, port: int
) -> list[IngestResult]:
    """One warehouse and one server; per batch size its own events (keys of their own), the
    bare COPY of the same rows, then the same rows through HTTP."""
    results = []
    with scratch_warehouse() as (url, env):
        from click.testing import CliRunner

        from billing.cli import main

        CliRunner().invoke(main, ["catalog", "apply", str(REPO / "examples/demo_catalog.yaml")])
        with api_server({**env, "BILLING_ADMIN_KEY": ADMIN_KEY}, port, workers) as api:
            warm_up = generate(2 * workers, prefix="warm-up")
            # warm up every worker's pools and caches
            send_all(api, [json.dumps({"events": [e]}).encode() for e in warm_up], workers)
            for batch in batches:
                events = generate(events_n, prefix=f"batch-{batch}")
                bodies = [
                    json.dumps({"events": events[i : i + batch]}).encode()
                    for i in range(0, len(events), batch)
                ]
                copy_seconds, copy_steal = bare_copy(url, events, batch)
                with psycopg.connect(url) as conn:
                    before = conn.execute("select count(*) from raw.events").fetchone()
                with hypervisor_steal() as http_steal:
                    http_seconds = send_all(api, bodies, connections)
                with psycopg.connect(url) as conn:
                    after = conn.execute("select count(*) from raw.events").fetchone()
                assert before is not None and after is not None
                assert after[0] - before[0] == events_n, (before, after)
                http_rate = events_n / http_seconds
                copy_rate = events_n / copy_seconds
                results.append(
                    IngestResult(
                        events_n,
                        batch,
                        workers,
                        connections,
                        round(http_seconds, 3),
                        round(http_rate),
                        round(copy_seconds, 3),
                        round(copy_rate),
                        round(http_rate / copy_rate, 3),
                        http_steal.mean_cores,
                        copy_steal.mean_cores,
                    )
                )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--port", type=int, default=18_080)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    results = run(args.events, tuple(args.batches), args.workers, args.connections, args.port)
    for result in results:
        print(
            f"ingest: {result.http_events_per_s:,} events/s through HTTP "
            f"(batch {result.batch_size:,}, {result.workers} workers, {result.connections} "
            f"connections); bare COPY {result.copy_events_per_s:,} events/s; "
            f"ratio {result.ratio:.2f}; the hypervisor took "
            f"{stolen_text(result.http_steal_cores, result.copy_steal_cores)} cores"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
