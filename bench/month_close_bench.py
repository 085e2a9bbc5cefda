"""The month close: raw events to invoices for one month (daily usage for every day, then the
monthly invoices), against the bare floor measured in the same run on the same data: one
deduplication and one daily GROUP BY in plain SQL. Then one new day, incrementally. The
floor and the full build run one after the other: each reports the cores the hypervisor
took meanwhile (steal time, bench.common.hypervisor_steal).

    .venv/bin/python -m bench.month_close_bench --events 10000000 --tenants 10000
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import psycopg
import yaml

from bench.common import (
    Breakdown,
    billing,
    hypervisor_steal,
    scratch_warehouse,
    stolen_text,
    timed_billing,
)
from warehouse.settings import DBT_PROJECT_DIR

MONTH = date(2026, 10, 1)
METRICS = ("api_calls", "active_users", "storage_gb", "builds", "seats")


@dataclass
class MonthCloseResult:
    events: int
    tenants: int
    load_seconds: float
    floor_dedup_seconds: float
    floor_group_by_seconds: float
    floor_seconds: float
    full_build_seconds: float
    ratio_to_floor: float
    new_day_events: int
    incremental_day_seconds: float
    incremental_share_of_full: float
    full_dbt_seconds: float
    incremental_dbt_seconds: float
    incremental_dbt_share: float
    invoices: int
    full_breakdown: Breakdown
    day_breakdown: Breakdown
    # the cores the hypervisor took on average meanwhile (bench.common.Steal)
    floor_steal_cores: float | None
    full_steal_cores: float | None


def catalog_yaml(tenants: int) -> str:
    """Four plans covering every pricing model; every tenant subscribed before the month."""
    plans = """
metrics:
  - {key: api_calls, aggregation: sum}
  - {key: active_users, aggregation: unique_count, property: user_id}
  - {key: storage_gb, aggregation: max}
  - {key: builds, aggregation: count}
  - {key: seats, aggregation: latest}
plans:
  - key: starter
    name: Starter
    interval: month
    currency: usd
    base_price: "19.00"
    charges:
      - {metric: api_calls, model: per_unit, unit_price: "0.001", included: 1000}
      - {metric: builds, model: package, package_size: 100, package_price: "2.50"}
  - key: pro
    name: Pro
    interval: month
    currency: usd
    base_price: "49.00"
    charges:
      - metric: api_calls
        model: graduated
        tiers:
          - {up_to: 10000, unit_price: "0.001"}
          - {up_to: null, unit_price: "0.0005", flat_fee: "5"}
      - {metric: active_users, model: package, package_size: 10, package_price: "5.00"}
      - metric: storage_gb
        model: graduated
        tiers: [{up_to: 100, unit_price: "0.10"}, {up_to: null, unit_price: "0.05"}]
      - metric: seats
        model: volume
        tiers: [{up_to: 10, unit_price: "8"}, {up_to: null, unit_price: "6", flat_fee: "10"}]
  - key: scale
    name: Scale
    interval: year
    currency: eur
    base_price: "12000.00"
    charges:
      - metric: api_calls
        model: volume
        included: 100000
        tiers:
          - {up_to: 1000000, unit_price: "0.0003"}
          - {up_to: null, unit_price: "0.0002"}
      - {metric: builds, model: per_unit, unit_price: "0.05"}
  - key: team_jp
    name: Team JP
    interval: month
    currency: jpy
    base_price: "5000"
    charges:
      - {metric: api_calls, model: per_unit, unit_price: "0.05"}
tenants:
"""
    plan_of = [("starter", "usd"), ("pro", "usd"), ("scale", "eur"), ("team_jp", "jpy")]
    lines = [plans]
    subs = ["subscriptions:"]
    for i in range(tenants):
        plan, currency = plan_of[i % 4]
        lines.append(f"  - {{id: tenant_{i}, name: Tenant {i}, currency: {currency}}}")
        subs.append(
            f"  - {{id: sub_{i}, tenant_id: tenant_{i}, plan: {plan}, "
            f'start: "2026-0{1 + i % 9}-15T00:00:00Z"}}'
        )
    return "\n".join(lines + subs) + "\n"


def generate_sql(
    events: int, tenants: int, first_day: str, days: int, seed_offset: int, *, now: bool = False
) -> str:
    """Events generated inside PostgreSQL: skewed tenants (a power law), five metrics, about
    1% client retries (a reused key), received shortly after they happened, or ``now`` (as
    the API stamps a batch: its transaction's start). Events a daily run has not stored yet
    must be received now: a run stores those received since the last batch's horizon, and
    nothing can be received in the past."""
    received = "now()" if now else "ts + interval '2 seconds'"
    return f"""
        insert into raw.events (tenant_id, metric, amount, event_ts, idempotency_key, metadata,
                                received_at)
        select
            'tenant_' || (floor(power(random(), 3) * {tenants}))::int,
            metric,
            case metric when 'storage_gb' then round((random() * 500)::numeric, 2)
                        when 'seats' then floor(random() * 40)::numeric
                        else floor(random() * 100)::numeric + 1 end,
            ts,
            'evt-' || ({seed_offset} + case when g % 100 = 0 then g - 1 else g end),
            case when metric = 'active_users'
                 then jsonb_build_object('user_id', 'u' || floor(random() * 2000)::int) end,
            {received}
        from (
            select g,
                   (array['api_calls','api_calls','active_users','storage_gb','builds','seats'])
                       [1 + floor(random() * 6)::int] as metric,
                   timestamptz '{first_day} 00:00:00+00'
                       + random() * interval '{days} days' as ts
            from generate_series(1, {events}) as g
        ) as s
        order by ts
    """


def session_settings() -> dict[str, str]:
    """The memory the dbt models' sessions get (dbt_project.yml's vars, macro tune_session)."""
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    return {name: project["vars"][name] for name in ("work_mem", "maintenance_work_mem")}


def timed(fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - started


def run(events: int, tenants: int, workdir: Path) -> MonthCloseResult:
    with scratch_warehouse() as (url, env):
        catalog = workdir / "bench_catalog.yaml"
        catalog.write_text(catalog_yaml(tenants))
        billing(env, "catalog", "apply", str(catalog))
        with psycopg.connect(url, autocommit=True) as conn:
            load = timed(lambda: conn.execute(generate_sql(events, tenants, "2026-10-01", 31, 0)))
            conn.execute("analyze raw.events")  # the catalog's tables: `catalog apply`

            # the floor gets the session settings the dbt models get (dbt_project.yml vars)
            for name, value in session_settings().items():
                conn.execute(f"set {name} = '{value}'")

            def floor_dedup() -> None:
                conn.execute("""create table public.floor_dedup as
                    select distinct on (tenant_id, idempotency_key) *
                    from raw.events order by tenant_id, idempotency_key, received_at, event_seq""")

            def floor_group_by() -> None:
                conn.execute("""create table public.floor_daily as
                    select tenant_id, metric, date_trunc('day', event_ts) as day,
                           sum(amount) as quantity, count(*) as event_count
                    from public.floor_dedup group by 1, 2, 3""")

            with hypervisor_steal() as floor_steal:
                dedup_s = timed(floor_dedup)
                group_s = timed(floor_group_by)
            conn.execute("drop table public.floor_dedup, public.floor_daily")

        full = Breakdown()
        with hypervisor_steal() as full_steal:
            month = ("--from", "2026-10-01", "--to", "2026-10-31")
            timed_billing(env, ("run", "daily", *month), full)
            timed_billing(env, ("run", "monthly", "--month", "2026-10"), full)
        full_s = full.wall
        new_day = events // 31
        with psycopg.connect(url, autocommit=True) as conn:
            # received after the month's batch, as a day's events are
            conn.execute(generate_sql(new_day, tenants, "2026-11-01", 1, events + 1, now=True))
            invoices = conn.execute("select count(*) from marts.fct_invoices").fetchone()
        day = Breakdown()
        timed_billing(env, ("run", "daily", "--date", "2026-11-01"), day)
        incremental_s = day.wall
        with psycopg.connect(url, autocommit=True) as conn:
            newest = conn.execute(
                """select count(*) from intermediate.int_events_arrivals
                   where arrival_batch = (select max(arrival_batch)
                                          from intermediate.int_events_arrivals)"""
            ).fetchone()
        # the day's run stored the day as its batch (a day received in the past stored none,
        # and the newest batch would be the month's)
        assert newest == (new_day,), newest
    floor_s = dedup_s + group_s
    assert invoices is not None
    return MonthCloseResult(
        events,
        tenants,
        round(load, 2),
        round(dedup_s, 2),
        round(group_s, 2),
        round(floor_s, 2),
        round(full_s, 2),
        round(full_s / floor_s, 2),
        new_day,
        round(incremental_s, 2),
        round(incremental_s / full_s, 3),
        round(full.executing, 2),
        round(day.executing, 2),
        round(day.executing / full.executing, 3),
        int(invoices[0]),
        full,
        day,
        floor_steal.mean_cores,
        full_steal.mean_cores,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.events, args.tenants, Path(tmp))
    print(
        f"month close: {result.events:,} events, {result.tenants:,} tenants: full build "
        f"{result.full_build_seconds:.1f} s vs floor {result.floor_seconds:.1f} s (dedup "
        f"{result.floor_dedup_seconds:.1f} + group by {result.floor_group_by_seconds:.1f}): "
        f"ratio {result.ratio_to_floor:.2f}; one new day ({result.new_day_events:,} events) "
        f"{result.incremental_day_seconds:.1f} s = {result.incremental_share_of_full:.1%} of "
        f"the full build (dbt execution alone: {result.incremental_dbt_seconds:.1f} s of "
        f"{result.full_dbt_seconds:.1f} s = {result.incremental_dbt_share:.1%}); "
        f"{result.invoices:,} invoices; the hypervisor took "
        f"{stolen_text(result.floor_steal_cores, result.full_steal_cores)} cores"
    )
    for name, spent in (("full build", result.full_breakdown), ("new day", result.day_breakdown)):
        print(f"{name}: " + ", ".join(f"{what} {seconds:.1f} s" for what, seconds in spent.parts()))
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2))


if __name__ == "__main__":
    main()
