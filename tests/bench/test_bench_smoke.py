"""The benchmarks run at a tiny size (their figures are not asserted: speed lives in bench/)."""

from __future__ import annotations

import pytest

from bench.ingest_bench import run
from tests.helpers import free_port

pytestmark = pytest.mark.slow


def test_ingest_benchmark_smoke() -> None:
    result = run(events_n=3_000, batch=1_000, workers=1, connections=2, port=free_port())
    assert result.events == 3_000
    assert result.http_events_per_s > 0 and result.copy_events_per_s > 0


def test_quota_benchmark_smoke() -> None:
    from bench.quota_bench import run as run_quota

    result = run_quota(seconds=0.5, connections=2, workers=1, tenants=3, port=free_port(), rate=50)
    assert result.quota.requests > 0 and result.quota.errors == 0
    assert result.healthz.requests > 0 and result.quota_at_rate.requests > 0
