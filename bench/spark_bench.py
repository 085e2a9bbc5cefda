"""The month close on Spark (the local `spark` target) and on PostgreSQL, for the same events:
`billing run daily` over the month then `billing run monthly`, the same commands with
BILLING_DBT_TARGET=spark. The copy of the sources into Spark is timed apart (on a cluster
events land there directly); the runs find it made (the sources' stamp) and copy nothing.
The invoices of both engines are compared.

    .venv/bin/python -m bench.spark_bench --events 100000 1000000 --tenants 1000
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.common import billing, scratch_warehouse
from bench.month_close_bench import catalog_yaml, generate_sql, timed
from warehouse.settings import Settings
from warehouse.spark import copy_sources, end_worker, query

MONTH = ("--from", "2026-10-01", "--to", "2026-10-31")


@dataclass
class SparkCloseResult:
    events: int
    tenants: int
    postgres_seconds: float
    spark_copy_seconds: float
    spark_seconds: float
    invoices: int
    invoices_equal: bool

    @property
    def ratio(self) -> float:
        return round(self.spark_seconds / self.postgres_seconds, 2)


def run(events: int, tenants: int, workdir: Path) -> SparkCloseResult:
    with scratch_warehouse() as (url, env):
        catalog = workdir / "spark_bench_catalog.yaml"
        catalog.write_text(catalog_yaml(tenants))
        billing(env, "catalog", "apply", str(catalog))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(generate_sql(events, tenants, "2026-10-01", 31, 0))
            conn.execute("analyze raw.events")

        def close(target_env: dict[str, str]) -> None:
            billing(target_env, "run", "daily", *MONTH)
            billing(target_env, "run", "monthly", "--month", "2026-10")

        postgres_s = timed(lambda: close(env))
        with psycopg.connect(url) as conn:
            expected: dict[str, int] = {
                invoice_id: int(total)
                for invoice_id, total in conn.execute(
                    "select invoice_id, total_minor from marts.fct_invoices"
                )
            }

        on_spark = Settings(dbt_target="spark")  # the rest from the scratch environment
        try:
            copy_s = timed(lambda: copy_sources(on_spark))
            # the runs find the sources copied already (their stamp: warehouse/spark.py)
            spark_s = timed(lambda: close({**env, "BILLING_DBT_TARGET": "spark"}))
            built = {
                row["invoice_id"]: int(row["total_minor"])
                for row in query("select invoice_id, total_minor from marts.fct_invoices", on_spark)
            }
        finally:
            # its JVM (a few GB) would outlive this warehouse until idle, beside what runs next
            end_worker(on_spark)
    return SparkCloseResult(
        events,
        tenants,
        round(postgres_s, 2),
        round(copy_s, 2),
        round(spark_s, 2),
        len(expected),
        built == expected,
    )


def growth(results: list[SparkCloseResult]) -> str:
    """How each engine's time grew from the smallest size to the largest."""
    if len(results) < 2:  # no growth to show (`--spark-sizes` gave one size or none)
        return ""
    small, large = min(results, key=lambda r: r.events), max(results, key=lambda r: r.events)
    factor = large.events / small.events
    return (
        f"From {small.events:,} to {large.events:,} events ({factor:g}x): PostgreSQL "
        f"{large.postgres_seconds / small.postgres_seconds:.1f}x the time, Spark "
        f"{large.spark_seconds / small.spark_seconds:.1f}x."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--tenants", type=int, default=1_000)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for events in args.events:
            result = run(events, args.tenants, Path(tmp))
            results.append(result)
            print(
                f"{events:,} events, {args.tenants:,} tenants: PostgreSQL "
                f"{result.postgres_seconds:.1f} s, Spark {result.spark_seconds:.1f} s "
                f"({result.ratio:.2f}x; copy {result.spark_copy_seconds:.1f} s); "
                f"{result.invoices:,} invoices, equal: {result.invoices_equal}"
            )
    print(growth(results))


if __name__ == "__main__":
    main()
