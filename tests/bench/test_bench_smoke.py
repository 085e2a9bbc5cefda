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
