"""The benchmarks run at a tiny size (their figures are not asserted: speed lives in bench/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.ingest_bench import run
from tests.helpers import free_port

pytestmark = pytest.mark.slow


def test_ingest_benchmark_smoke() -> None:
    results = run(events_n=3_000, batches=(100, 1_000), workers=1, connections=2, port=free_port())
    assert [(r.events, r.batch_size) for r in results] == [(3_000, 100), (3_000, 1_000)]
    assert all(r.http_events_per_s > 0 and r.copy_events_per_s > 0 for r in results)


def test_quota_benchmark_smoke() -> None:
    from bench.quota_bench import run as run_quota

    result = run_quota(seconds=0.5, connections=2, workers=1, tenants=3, port=free_port(), rate=50)
    assert result.quota.requests > 0 and result.quota.errors == 0
    assert result.healthz.requests > 0 and result.quota_at_rate.requests > 0


@pytest.mark.minutes(6)
@pytest.mark.timeout(1800)  # Spark included: see tests/spark
def test_make_bench_smoke_writes_results_with_the_peer(tmp_path: Path) -> None:
    """`make bench` end to end at a tiny size, the svc-infra peer and Spark included."""
    from bench.run_all import run as run_all

    out = tmp_path / "RESULTS.md"
    text = run_all(
        sizes=(20_000,),
        tenant_counts=(50,),
        tenant_size=20_000,
        ingest_events=2_000,
        quota_seconds=0.5,
        peer_events=600,
        peer_tenants=5,
        out=out,
        spark_sizes=(3_000,),
        spark_tenants=20,
        dagster_days=2,
    )
    assert out.read_text() == text
    for heading in (
        "Ingest through HTTP",
        "Quota checks",
        "Month close",
        "on Spark",
        "svc-infra",
        "through Dagster",
    ):
        assert heading in text
    spark_row = next(line for line in text.splitlines() if line.startswith("| 3,000 | 20 |"))
    assert spark_row.endswith("| yes |")  # Spark's invoices have PostgreSQL's totals
    assert "0 disagree" in text  # the peer's daily totals equal ours
    assert (tmp_path / "scale.png").stat().st_size > 1_000
