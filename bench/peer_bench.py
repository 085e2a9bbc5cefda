"""Side by side with the seed's peer, svc-infra's ``AsyncBillingService``, on one PostgreSQL
and the same events (``bench.events``: skewed tenants, retries, late events).

Ours: the events through ``POST /v1/events`` (``billing serve --workers 2``), then
``billing run daily`` for the month and ``billing run monthly``. The peer (in its own
process, ``bench/peer_svc_infra.py``, with the packages `make bench` installs in
``.billing/peer``): ``record_usage`` per event, ``aggregate_daily`` per tenant, metric and
day, ``generate_monthly_invoice`` per tenant, in a database of its own on the same server.
The daily totals are compared (every metric here is a sum, which is all the peer knows).

    python -m bench.peer_bench --events 50000 --tenants 50
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from bench.common import REPO, Breakdown, api_server, billing, scratch_warehouse, timed_billing
from bench.events import generate_events
from bench.ingest_bench import ADMIN_KEY, send_all

PEER_DIR = REPO / ".billing" / "peer"


@dataclass(frozen=True)
class PeerResult:
    events: int
    tenants: int
    ours_events_per_s: float
    peer_events_per_s: float
    ours_month_seconds: float
    peer_month_seconds: float
    days_compared: int
    days_disagreeing: int
    peer_duplicates_skipped: int
    ours_breakdown: Breakdown


def catalog_yaml(tenants: int) -> str:
    lines = [
        "metrics:",
        "  - {key: api_calls, aggregation: sum}",
        "  - {key: builds, aggregation: sum}",
        "  - {key: emails, aggregation: sum}",
        "plans:",
        "  - key: basic",
        "    name: Basic",
        "    interval: month",
        "    currency: usd",
        '    base_price: "10.00"',
        "    charges:",
        '      - {metric: api_calls, model: per_unit, unit_price: "0.001"}',
        '      - {metric: builds, model: per_unit, unit_price: "0.01"}',
        '      - {metric: emails, model: per_unit, unit_price: "0.0001"}',
        "tenants:",
        *(f"  - {{id: t{i}, name: T{i}, currency: usd}}" for i in range(tenants)),
        "subscriptions:",
        *(
            f"  - {{id: s{i}, tenant_id: t{i}, plan: basic, start: '2026-01-01T00:00:00Z'}}"
            for i in range(tenants)
        ),
    ]
    return "\n".join(lines) + "\n"


def peer_available() -> bool:
    return (PEER_DIR / "svc_infra" / "billing").is_dir()


def run(events_n: int, tenants: int, port: int, batch: int = 1_000) -> PeerResult:
    if not peer_available():
        raise RuntimeError(f"svc-infra is not installed in {PEER_DIR}: run `make bench`")
    events = generate_events(events_n, tenants)
    work = Path(tempfile.mkdtemp(prefix="peer-bench-"))
    with scratch_warehouse() as (url, env):
        catalog = work / "catalog.yaml"
        catalog.write_text(catalog_yaml(tenants))
        billing(env, "catalog", "apply", str(catalog))

        bodies = [
            json.dumps({"events": [e.as_json() for e in events[i : i + batch]]}).encode()
            for i in range(0, len(events), batch)
        ]
        with api_server({**env, "BILLING_ADMIN_KEY": ADMIN_KEY}, port, 2) as api:
            send_all(api, bodies[:1], 1)  # warm up (its events are sent again below: retries)
            http_seconds = send_all(api, bodies, 4)
        breakdown = Breakdown()
        for args in (
            ("run", "daily", "--from", "2026-10-01", "--to", "2026-10-31"),
            ("run", "monthly", "--month", "2026-10"),
        ):
            timed_billing(env, args, breakdown)
        with psycopg.connect(url) as conn:
            ours = {
                f"{tenant}|{metric}|{day}": int(quantity)
                for tenant, metric, day, quantity in conn.execute(
                    "select tenant_id, metric, usage_date, quantity from marts.fct_usage_daily"
                )
            }
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create database peer")
        params = conninfo_to_dict(url)
        host = params["host"]
        password = f":{params['password']}" if params.get("password") else ""
        events_file = work / "events.jsonl"
        events_file.write_text("".join(json.dumps(e.as_json()) + "\n" for e in events))
        peer_url = (
            f"postgresql+psycopg://{params.get('user', 'postgres')}{password}@/peer?host={host}"
        )
        peer = subprocess.run(
            [sys.executable, str(REPO / "bench" / "peer_svc_infra.py"), peer_url, str(events_file)],
            env={**os.environ, "PYTHONPATH": f"{PEER_DIR}{os.pathsep}{REPO}"},
            check=True,
            capture_output=True,
            text=True,
        )
        theirs = json.loads(peer.stdout.strip().splitlines()[-1])
    days = set(ours) | set(theirs["daily_totals"])
    disagreeing = sum(1 for d in days if ours.get(d) != theirs["daily_totals"].get(d))
    return PeerResult(
        events=len(events),
        tenants=tenants,
        ours_events_per_s=round(len(events) / http_seconds),
        peer_events_per_s=round(len(events) / theirs["record_seconds"]),
        ours_month_seconds=round(breakdown.wall, 2),
        peer_month_seconds=round(theirs["month_seconds"], 2),
        days_compared=len(days),
        days_disagreeing=disagreeing,
        peer_duplicates_skipped=theirs["duplicates_skipped"],
        ours_breakdown=breakdown,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--port", type=int, default=18_082)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(args.events, args.tenants, args.port)
    print(json.dumps(asdict(result), indent=2))
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2))


if __name__ == "__main__":
    main()
