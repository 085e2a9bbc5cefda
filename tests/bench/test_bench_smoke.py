"""`make bench` at a tiny size (its figures are not asserted: speed lives in bench/). Every
benchmark refuses to report a run whose requests failed."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.minutes(2)
@pytest.mark.timeout(1200)
def test_make_bench_smoke_writes_results_with_the_peer(
    tmp_path: Path, sockets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make bench` end to end at a tiny size, the svc-infra peer included. Spark's size is
    left out (`--spark-sizes` with none): `billing run` on Spark against PostgreSQL's
    invoices, its worker ended by its caller, is the Spark parity test's (tests/spark), and a
    third JVM in the suite cost a tenth of `make test`'s CPU."""
    from bench import ingest_bench
    from bench.run_all import run as run_all

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(sockets))  # its dbt workers, ended after the test

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
        spark_sizes=(),
        upcoming_sizes=(2_000,),
        upcoming_tenants=20,
        upcoming_former=10,
        dagster_days=2,
    )
    assert out.read_text() == text
    for heading in (
        "Ingest through HTTP",
        "Quota checks",
        "Month close",
        "svc-infra",
        "through Dagster",
        "upcoming invoice",
    ):
        assert heading in text
    assert "| a no-op ASGI app offered 2,000/s |" in text  # the quota checks' latency floor
    assert "| stolen cores: mean / worst 0.1 s |" in text  # the machine's own noise beside
    assert "| stolen cores: HTTP / COPY |" in text
    assert "| stolen cores: floor / full |" in text
    # the slowest dbt nodes of the full build, of the new day and of our month beside the
    # peer, from the commands' run_results
    assert text.count("| dbt node | seconds | share of the nodes' seconds |") == 3
    # the upcoming invoice of the big tenant, then of a small one on the same connections
    assert "| 2,000 | 20 | 20 | 360 | 20 |" in text
    for batch in ingest_bench.BATCHES:  # ingest at each batch size, beside its bare COPY
        assert f"| 2,000 | {batch:,} |" in text
    assert "Not run: `--spark-sizes` gave no size." in text
    assert "0 disagree" in text  # the peer's daily totals equal ours
    assert (tmp_path / "scale.png").stat().st_size > 1_000
