"""A day through Dagster: the daily schedule's run, its dbt command handed to the warm dbt
worker (orchestration/dbt_worker.py), against the same run with a dbt process per command
(``BILLING_DBT_WORKER=false``), in the same run of the benchmark.

A scratch warehouse holds the demo catalog and a month of its usage; the daily job runs for
one day after another, the two ways taking turns (a day each), as the daemon runs a
schedule's request (``execute_in_process`` of the job for the day's partition).

    .venv/bin/python -m bench.dagster_bench --days 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from datetime import date, timedelta

import psycopg

from bench.common import REPO, billing, scratch_warehouse
from orchestration.dbt_run import environment
from orchestration.dbt_worker import IDLE_ENV, WORKER_ENV

MONTH = date(2026, 10, 1)


@dataclass(frozen=True)
class DagsterDayResult:
    days: int
    first_warm_s: float  # the worker's first command: it starts then
    warm_s: float  # the median of the others
    process_s: float  # the median with a dbt process per command

    @property
    def ratio(self) -> float:
        return self.warm_s / self.process_s


def run(days: int) -> DagsterDayResult:
    from dagster import DagsterInstance

    from billing.demo import generate_usage
    from ingest.writer import copy_events
    from orchestration.definitions import daily_job, defs

    with scratch_warehouse() as (url, env):
        billing(env, "catalog", "apply", str(REPO / "examples" / "demo_catalog.yaml"))
        with psycopg.connect(url) as conn:
            copy_events(conn, generate_usage(MONTH, seed=3))
        job = defs.resolve_job_def(daily_job.name)
        instance = DagsterInstance.ephemeral()
        seconds: dict[bool, list[float]] = {True: [], False: []}
        for n in range(days):
            warm = n % 2 == 0
            day = MONTH + timedelta(days=n)
            with environment({WORKER_ENV: str(warm).lower(), IDLE_ENV: "60", **env}):
                started = time.perf_counter()
                result = job.execute_in_process(instance=instance, partition_key=day.isoformat())
                seconds[warm].append(time.perf_counter() - started)
            assert result.success, day
    first, *rest = seconds[True]
    return DagsterDayResult(
        days, first, statistics.median(rest or [first]), statistics.median(seconds[False])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=10)
    result = run(parser.parse_args().days)
    print(
        f"a day through Dagster: {result.warm_s:.2f} s warm (first {result.first_warm_s:.2f} s), "
        f"{result.process_s:.2f} s with a dbt process per command; ratio {result.ratio:.2f}"
    )


if __name__ == "__main__":
    main()
