"""The upcoming invoice: GET /v1/invoices/upcoming for one tenant whose current month holds
``events`` events (stored by a daily run, and 1% more received since), among ``tenants``
tenants that share a tenth as many again, in a warehouse with a past: ``former`` tenants
billed for three years before these (their frozen invoices, 36 each with 3 lines, and
their subscriptions' changes, 3 each); one request at a time against `billing serve`, then a
small tenant's reads on the same connections, beside GET /healthz from the same server in
the same run.

    .venv/bin/python -m bench.upcoming_bench --events 1000000 --tenants 1000 --former 10000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from bench.common import api_server, billing, scratch_warehouse
from bench.month_close_bench import catalog_yaml

TENANT = "tenant_1"  # the `pro` plan: every aggregation and pricing model but percentage
SMALL = "tenant_5"  # on `pro` too, with a share of the other tenants' tenth
TARGET_MS = 250.0
PAST_MONTHS = 36  # the former tenants' closed months: 2023 to 2025


@dataclass
class UpcomingResult:
    events: int
    pending: int
    lines: int
    requests: int
    p50_ms: float
    p99_ms: float
    healthz_p50_ms: float
    healthz_p99_ms: float
    tenants: int
    small_events: int
    small_p50_ms: float
    small_p99_ms: float
    frozen_invoices: int


def _events_sql(
    n: int,
    first: datetime,
    last: datetime,
    offset: int,
    *,
    stored: bool,
    tenant: str = f"'{TENANT}'",
) -> str:
    """``n`` events of ``tenant`` (an SQL expression of the row number ``g``) between
    ``first`` and ``last``: the catalog's five metrics. Those to be ``stored`` by the run
    that follows were received 2 seconds after their time; the others now, as the API
    receives them (after the run's batch: pending)."""
    received = "least(ts + interval '2 seconds', now())" if stored else "clock_timestamp()"
    seconds = max((last - first).total_seconds(), 1.0)
    return f"""
        insert into raw.events (tenant_id, metric, amount, event_ts, idempotency_key, metadata,
                                received_at)
        select {tenant}, metric,
               case metric when 'storage_gb' then round((random() * 500)::numeric, 2)
                           when 'seats' then floor(random() * 40)::numeric
                           else floor(random() * 100)::numeric + 1 end,
               ts, 'up-' || ({offset} + g),
               case when metric = 'active_users'
                    then jsonb_build_object('user_id', 'u' || floor(random() * 2000)::int) end,
               {received}
        from (
            select g,
                   (array['api_calls','api_calls','active_users','storage_gb','builds','seats'])
                       [1 + floor(random() * 6)::int] as metric,
                   timestamptz '{first.isoformat()}' + random() * interval '{seconds} seconds'
                       as ts
            from generate_series(1, {n}) as g
        ) as s
        order by ts
    """


def _past_sql(former: int) -> list[str]:
    """Three years of a warehouse's past before this month's tenants: ``former`` tenants
    with a frozen invoice in each month of 2023 to 2025 (stored as the close stores them,
    app.closed_months kept by its trigger, watermarks included) and its three lines (a base
    fee and two usage lines, which add up to its subtotal), and a subscription each,
    started and moved twice. A read must cost its own tenant's history, not this."""
    return [
        f"""insert into app.finalized_invoices
                (invoice_id, tenant_id, currency, period_start, period_end, subtotal_minor,
                 tax_minor, total_minor, finalized_at, arrivals_through,
                 subscription_events_through)
            select 'former_' || t || '_' || m, 'former_' || t, 'usd', p.s,
                   p.s + interval '1 month', 4900, 0, 4900,
                   p.s + interval '1 month 2 hours', 0, 0
            from generate_series(1, {former}) as t, generate_series(0, {PAST_MONTHS - 1}) as m,
                 lateral (select timestamptz '2023-01-01Z' + m * interval '1 month') as p(s)""",
        """insert into app.finalized_invoice_lines
                (invoice_id, line_id, tenant_id, line_type, metric, plan_key, quantity,
                 billable_quantity, amount_minor, currency, description, service_start,
                 service_end, period_start)
            select i.invoice_id, i.invoice_id || '_' || k, i.tenant_id,
                   case when k = 0 then 'base_fee' else 'usage' end,
                   case when k = 0 then null else 'api_calls' end, 'starter',
                   1000 * k, 1000 * k, case when k = 0 then 2900 else 1000 end, 'usd',
                   case when k = 0 then 'base fee' else 'api calls' end,
                   i.period_start, i.period_end, i.period_start
            from app.finalized_invoices as i, generate_series(0, 2) as k
            where i.invoice_id like 'former_%'""",
        f"""insert into raw.subscription_events
                (subscription_id, tenant_id, action, plan_key, effective_at, source)
            select 'former_sub_' || t, 'former_' || t, v.action, v.plan_key, v.at, 'api'
            from generate_series(1, {former}) as t,
                 (values ('start', 'starter', timestamptz '2023-01-01Z'),
                         ('change_plan', 'pro', timestamptz '2024-03-01Z'),
                         ('cancel', null, timestamptz '2026-01-01Z')) as v(action, plan_key, at)
            order by t""",
    ]


def _latencies(client: httpx.Client, path: str, n: int, **kwargs: object) -> list[float]:
    found = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(path, **kwargs)  # type: ignore[arg-type]
        found.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return found


def _p99(values: list[float]) -> float:
    return sorted(values)[max(0, round(len(values) * 0.99) - 1)]


def run(
    events: int,
    requests: int,
    port: int,
    workdir: Path,
    tenants: int = 1_000,
    former: int = 10_000,
) -> UpcomingResult:
    """The big tenant read first on each API connection, then a small one on the same
    connections: a connection plans the chain of views once, with the tenant it reads first
    (a plan made for the biggest tenant once cost every later read on its connection 6 s at
    10M events, DECISIONLOG.md), and the tenants' events are in the same tables."""
    now = datetime.now(UTC).replace(microsecond=0)
    month_start = now.replace(day=1, hour=0, minute=0, second=0)
    pending = max(events // 100, 1)
    tenants = max(tenants, 6)  # the big tenant_1, the small tenant_5 among the others
    others = events // 10
    with scratch_warehouse() as (url, env):
        catalog = workdir / "upcoming_catalog.yaml"
        catalog.write_text(catalog_yaml(tenants))
        billing(env, "catalog", "apply", str(catalog))
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in _past_sql(former):
                conn.execute(statement)
            conn.execute(
                _events_sql(events - pending, month_start, now - timedelta(hours=1), 0, stored=True)
            )
            # every tenant but the big one (tenant_1) by turns: tenant_0, tenant_2, ...
            conn.execute(
                _events_sql(
                    others,
                    month_start,
                    now - timedelta(hours=1),
                    events,
                    stored=True,
                    tenant=f"'tenant_' || (case when g % {tenants - 1} = 0 then 0 "
                    f"else 1 + g % {tenants - 1} end)",
                )
            )
            small_events = conn.execute(
                "select count(*) from raw.events where tenant_id = %s", (SMALL,)
            ).fetchone()
        billing(env, "run", "daily", "--from", f"{month_start:%Y-%m-%d}", "--to", f"{now:%Y-%m-%d}")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                _events_sql(pending, now - timedelta(minutes=50), now, events, stored=False)
            )
            conn.execute("analyze")
        key, small_key = (
            billing(env, "apikey", "create", "--tenant", tenant).strip().splitlines()[-1]
            for tenant in (TENANT, SMALL)
        )
        with (
            api_server(env, port, workers=2) as base,
            httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=600
            ) as client,
        ):
            body = client.get("/v1/invoices/upcoming").json()  # warm: the worker's first read
            _latencies(client, "/v1/invoices/upcoming", 1)
            upcoming = _latencies(client, "/v1/invoices/upcoming", requests)
            as_small = {"Authorization": f"Bearer {small_key}"}
            small = client.get("/v1/invoices/upcoming", headers=as_small).json()
            assert small["tenant_id"] == SMALL and small["invoices"], small
            small_ms = _latencies(client, "/v1/invoices/upcoming", requests, headers=as_small)
            healthz = _latencies(client, "/healthz", max(requests, 100))
    assert small_events is not None
    return UpcomingResult(
        events,
        pending,
        sum(len(invoice["lines"]) for invoice in body["invoices"]),
        requests,
        round(statistics.median(upcoming), 1),
        round(_p99(upcoming), 1),
        round(statistics.median(healthz), 2),
        round(_p99(healthz), 2),
        tenants,
        int(small_events[0]),
        round(statistics.median(small_ms), 1),
        round(_p99(small_ms), 1),
        former * PAST_MONTHS,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--port", type=int, default=18_183)
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--former", type=int, default=10_000)
    args = parser.parse_args()
    work = Path("/tmp")
    for n in args.events:
        result = run(n, args.requests, args.port, work, args.tenants, args.former)
        print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
