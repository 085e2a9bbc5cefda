"""`make bench`: every benchmark, each figure next to its baseline from the same run, into
``bench/RESULTS.md`` (with a chart of how the month close grows, ``bench/scale.png``).

    python -m bench.run_all                        # the full set (about half an hour)
    python -m bench.run_all --sizes 1000000 --peer-events 20000 --out /tmp/RESULTS.md
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    dagster_bench,
    ingest_bench,
    month_close_bench,
    peer_bench,
    quota_bench,
    spark_bench,
    upcoming_bench,
)
from bench.common import REPO, Breakdown, stolen_text

DEFAULT_SIZES = (1_000_000, 10_000_000, 30_000_000)
DEFAULT_TENANT_COUNTS = (100, 1_000, 10_000)
DEFAULT_SPARK_SIZES = (100_000, 1_000_000)
DEFAULT_UPCOMING_SIZES = (100_000, 1_000_000)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in row) + " |"
        for row in rows
    ]
    return "\n".join(lines)


def _breakdown_table(spent: Breakdown) -> str:
    return _table(
        ["part", "seconds", "share"],
        [
            [what, round(seconds, 2), f"{seconds / spent.wall:.0%}"]
            for what, seconds in spent.parts()
        ],
    )


def _nodes_table(spent: Breakdown, count: int = 8) -> str:
    total = sum(spent.node_seconds.values())
    return _table(
        ["dbt node", "seconds", "share of the nodes' seconds"],
        [
            [name, round(seconds, 2), f"{seconds / total:.0%}"]
            for name, seconds in spent.slowest(count)
        ],
    )


def _plot(closes: list[month_close_bench.MonthCloseResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_events = sorted(
        (r for r in closes if r.tenants == max(c.tenants for c in closes)), key=lambda r: r.events
    )
    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    xs = [r.events / 1e6 for r in by_events]
    axes.plot(xs, [r.full_build_seconds for r in by_events], marker="o", label="full build (ours)")
    axes.plot(xs, [r.floor_seconds for r in by_events], marker="o", label="floor: dedup + GROUP BY")
    axes.set_xlabel("events (millions)")
    axes.set_ylabel("seconds")
    axes.set_title("Month close, raw events to invoices")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def upcoming_section(results: list[upcoming_bench.UpcomingResult]) -> str:
    table = _table(
        ["events this month", "of them pending", "tenants", "frozen invoices before",
         "requests", "p50 ms", "p99 ms", "a small tenant's events", "its p50 ms",
         "its p99 ms", "healthz p50 ms", "healthz p99 ms", "p99 / 250 ms goal"],
        [
            [r.events, r.pending, r.tenants, r.frozen_invoices, r.requests, r.p50_ms,
             r.p99_ms, r.small_events, r.small_p50_ms, r.small_p99_ms, r.healthz_p50_ms,
             r.healthz_p99_ms, round(max(r.p99_ms, r.small_p99_ms) / upcoming_bench.TARGET_MS, 2)]
            for r in results
        ],
    )  # fmt: skip
    return (
        f"{table}\n\nOne tenant (`pro`: sum, unique_count, max and latest metrics) with that "
        "many events this month, stored by a daily run but 1% received since, among tenants "
        "that share a tenth as many; `GET /v1/invoices/upcoming` with its key, one request at "
        "a time, `billing serve --workers 2`, after two warm-up reads. Then a small tenant on "
        "`pro` with its own key, on the same connections: each plans its reads with the "
        "tenant it read first, here the biggest. The goal is for the worse p99 of the two. "
        "The warehouse has a past: former tenants billed from 2023 to 2025, a frozen invoice "
        "of three lines each month and a subscription moved twice, which a read must not pay "
        "for."
    )


def _say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def run(
    sizes: tuple[int, ...],
    tenant_counts: tuple[int, ...],
    tenant_size: int,
    ingest_events: int,
    quota_seconds: float,
    peer_events: int,
    peer_tenants: int,
    out: Path,
    spark_sizes: tuple[int, ...] = DEFAULT_SPARK_SIZES,
    spark_tenants: int = 1_000,
    upcoming_sizes: tuple[int, ...] = DEFAULT_UPCOMING_SIZES,
    dagster_days: int = 10,
    command: str = "make bench",
    upcoming_tenants: int = 1_000,
    upcoming_former: int = 10_000,
) -> str:
    started = time.perf_counter()
    _say(f"ingest: {ingest_events:,} events")
    ingest = ingest_bench.run(ingest_events, ingest_bench.BATCHES, 2, 4, 18_180)
    _say(f"quota checks: {quota_seconds:g} s a run")
    quota = quota_bench.run(quota_seconds, 16, 2, 100, 18_181, 2_000)
    _say(
        f"the upcoming invoice: {', '.join(f'{n:,}' for n in upcoming_sizes)} events, "
        f"{upcoming_tenants:,} tenants, {upcoming_former:,} former ones"
    )
    with tempfile.TemporaryDirectory() as work:
        upcoming = [
            upcoming_bench.run(n, 20, 18_183, Path(work), upcoming_tenants, upcoming_former)
            for n in upcoming_sizes
        ]
    _say(f"days through Dagster: {dagster_days}")
    dagster_days_result = dagster_bench.run(dagster_days)
    _say(f"side by side with svc-infra: {peer_events:,} events")
    peer = peer_bench.run(peer_events, peer_tenants, 18_182)
    closes = []
    with tempfile.TemporaryDirectory() as work:
        for size in sizes:
            _say(f"month close: {size:,} events, {max(tenant_counts):,} tenants")
            closes.append(month_close_bench.run(size, max(tenant_counts), Path(work)))
        for tenants in tenant_counts:
            if tenants != max(tenant_counts) or tenant_size not in sizes:
                _say(f"month close: {tenant_size:,} events, {tenants:,} tenants")
                closes.append(month_close_bench.run(tenant_size, tenants, Path(work)))
        sparks = []
        for size in spark_sizes:
            _say(f"month close on Spark and PostgreSQL: {size:,} events, {spark_tenants:,} tenants")
            sparks.append(spark_bench.run(size, spark_tenants, Path(work)))
    biggest = max(closes, key=lambda r: (r.events, r.tenants))
    chart = out.with_name("scale.png")
    _plot(closes, chart)
    elapsed = time.perf_counter() - started

    sections = [
        "# Benchmark results",
        "",
        f"Written by `{command}` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{elapsed / 60:.0f} min) on "
        f"{platform.node()}: {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, the embedded PostgreSQL. Every figure has its baseline "
        "from the same run beside it; machines are noisy, ratios less so. How each is "
        "measured: `bench/README.md`.",
        "",
        "## Ingest through HTTP against a bare COPY",
        "",
        _table(
            [
                "events",
                "batch",
                "HTTP events/s",
                "bare COPY events/s",
                "ratio",
                "stolen cores: HTTP / COPY",
            ],
            [
                [
                    r.events,
                    r.batch_size,
                    r.http_events_per_s,
                    r.copy_events_per_s,
                    r.ratio,
                    stolen_text(r.http_steal_cores, r.copy_steal_cores),
                ]
                for r in ingest
            ],
        ),
        "",
        f"`billing serve --workers {ingest[0].workers}`, {ingest[0].connections} keep-alive "
        "connections; the bare COPY commits once per batch, as the API does. Stolen cores: "
        "what the hypervisor took of the machine's on average while each ran (steal time).",
        "",
        "## Quota checks against GET /healthz",
        "",
        _table(
            ["run", "per second", "p50 ms", "p99 ms", "stolen cores: mean / worst 0.1 s"],
            [
                [
                    name,
                    round(load.per_second),
                    round(load.p50_ms, 2),
                    round(load.p99_ms, 2),
                    stolen_text(load.steal_cores, load.steal_worst_cores),
                ]
                for name, load in (
                    ("checks, back to back", quota.quota),
                    ("healthz, back to back", quota.healthz),
                    (f"checks offered at {quota.rate:,.0f}/s", quota.quota_at_rate),
                    (f"a no-op ASGI app offered {quota.rate:,.0f}/s", quota.floor_at_rate),
                )
            ],
        ),
        "",
        f"Ratio of checks to healthz: {quota.ratio:.2f}. The last row is the same open-loop "
        "load against an app that does nothing, under the same uvicorn and workers: the "
        "latency the machine and the load generator add before any work. Stolen cores: "
        "what the hypervisor took of the two during the run (steal time), on average and "
        "in its worst tenth of a second; a run's tail follows it.",
        "",
        "## The upcoming invoice against GET /healthz",
        "",
        upcoming_section(upcoming),
        "",
        "## Month close against the bare SQL floor, and one incremental day",
        "",
        _table(
            [
                "events",
                "tenants",
                "floor s",
                "full build s",
                "ratio",
                "new day s",
                "day / full",
                "stolen cores: floor / full",
            ],
            [
                [
                    r.events,
                    r.tenants,
                    r.floor_seconds,
                    r.full_build_seconds,
                    r.ratio_to_floor,
                    r.incremental_day_seconds,
                    r.incremental_share_of_full,
                    stolen_text(r.floor_steal_cores, r.full_steal_cores),
                ]
                for r in sorted(closes, key=lambda r: (r.tenants, r.events))
            ],
        ),
        "",
        "Stolen cores: what the hypervisor took of the machine's on average while the floor "
        "and while the full build ran (steal time).",
        "",
        "Where the seconds of the full build (`billing run daily` over the month, then "
        f"`monthly`) go, at {biggest.events:,} events ({biggest.tenants:,} tenants):",
        "",
        _breakdown_table(biggest.full_breakdown),
        "",
        "Its slowest dbt nodes, each node's own time from the commands' `run_results.json` "
        "(a daily run runs two nodes at a time, so the nodes' seconds add up to more than "
        "the run's):",
        "",
        _nodes_table(biggest.full_breakdown),
        "",
        "And those of the new day:",
        "",
        _breakdown_table(biggest.day_breakdown),
        "",
        _nodes_table(biggest.day_breakdown),
        "",
        f"![month close by events]({chart.name})",
        "",
        "## A day through Dagster: the warm dbt worker against a dbt process per command",
        "",
        _table(
            ["days run", "worker's first s", "warm s", "a process per command s", "ratio"],
            [
                [
                    dagster_days_result.days,
                    round(dagster_days_result.first_warm_s, 2),
                    round(dagster_days_result.warm_s, 2),
                    round(dagster_days_result.process_s, 2),
                    round(dagster_days_result.ratio, 2),
                ]
            ],
        ),
        "",
        "The daily schedule's job for one day of the demo's October after another, the two "
        "ways taking turns (`BILLING_DBT_WORKER`); medians, the worker's first run (it starts "
        "then) apart.",
        "",
        "## The month close on Spark and on PostgreSQL",
        "",
        _table(
            [
                "events",
                "tenants",
                "PostgreSQL s",
                "Spark s",
                "Spark / PostgreSQL",
                "copy into Spark s",
                "invoices",
                "same totals",
            ],
            [
                [
                    r.events,
                    r.tenants,
                    r.postgres_seconds,
                    r.spark_seconds,
                    r.ratio,
                    r.spark_copy_seconds,
                    r.invoices,
                    "yes" if r.invoices_equal else "NO",
                ]
                for r in sparks
            ],
        )
        if sparks
        else "Not run: `--spark-sizes` gave no size.",
        "",
        "The same dbt models (`billing run daily` over the month, then `monthly`), with "
        "BILLING_DBT_TARGET=spark: a local Spark (2 cores, Parquet) against the embedded "
        "PostgreSQL. The copy of the sources into Spark is apart: on a cluster events land "
        "there. " + spark_bench.growth(sparks),
        "",
        "## Side by side with svc-infra's AsyncBillingService",
        "",
        _table(
            ["", "ours", "svc-infra"],
            [
                ["events recorded per second", peer.ours_events_per_s, peer.peer_events_per_s],
                [
                    "the month (aggregate + invoice), s",
                    peer.ours_month_seconds,
                    peer.peer_month_seconds,
                ],
            ],
        ),
        "",
        f"Ours within {peer.ours_month_seconds / peer.peer_month_seconds:.1f}x of svc-infra's "
        "month. Where our seconds go (the two `billing run` commands, each a process):",
        "",
        _breakdown_table(peer.ours_breakdown),
        "",
        "Our slowest dbt nodes there:",
        "",
        _nodes_table(peer.ours_breakdown),
        "",
        f"{peer.events:,} events ({peer.tenants} tenants, retries and late events included) on the "
        f"same PostgreSQL. Ours: `POST /v1/events` then `billing run daily` and `monthly`; "
        f"theirs: `record_usage`, `aggregate_daily`, `generate_monthly_invoice`. Daily totals "
        f"compared: {peer.days_compared:,} tenant-metric-days, {peer.days_disagreeing} disagree "
        f"(the peer refused {peer.peer_duplicates_skipped} retried keys by its unique constraint).",
        "",
    ]
    text = "\n".join(sections)
    out.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--tenant-counts", type=int, nargs="+", default=list(DEFAULT_TENANT_COUNTS))
    parser.add_argument(
        "--tenant-size", type=int, default=1_000_000, help="Events of the tenant-scaling runs."
    )
    parser.add_argument("--ingest-events", type=int, default=500_000)
    parser.add_argument("--quota-seconds", type=float, default=10.0)
    parser.add_argument("--peer-events", type=int, default=50_000)
    parser.add_argument("--peer-tenants", type=int, default=50)
    parser.add_argument("--spark-sizes", type=int, nargs="*", default=list(DEFAULT_SPARK_SIZES))
    parser.add_argument("--spark-tenants", type=int, default=1_000)
    parser.add_argument(
        "--upcoming-sizes", type=int, nargs="*", default=list(DEFAULT_UPCOMING_SIZES)
    )
    parser.add_argument("--upcoming-tenants", type=int, default=1_000)
    parser.add_argument("--upcoming-former", type=int, default=10_000)
    parser.add_argument("--dagster-days", type=int, default=10)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args()
    print(
        run(
            tuple(args.sizes),
            tuple(args.tenant_counts),
            args.tenant_size,
            args.ingest_events,
            args.quota_seconds,
            args.peer_events,
            args.peer_tenants,
            args.out,
            tuple(args.spark_sizes),
            args.spark_tenants,
            tuple(args.upcoming_sizes),
            args.dagster_days,
            # `make bench` runs this with no arguments; other runs say which they were given
            "python -m bench.run_all " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "make bench",
            args.upcoming_tenants,
            args.upcoming_former,
        )
    )


if __name__ == "__main__":
    main()
