"""The catalog's metrics as the API sees them, refreshed from the warehouse."""

from __future__ import annotations

import threading
import time

from psycopg_pool import ConnectionPool

from ingest.schemas import Metric


class MetricCatalog:
    """Metric keys, their aggregation and whether they accept negative amounts, re-read
    every few seconds and at once (at most once a second) when an event names a metric not
    known yet."""

    def __init__(self, pool: ConnectionPool, ttl: float = 5.0) -> None:
        self._pool = pool
        self._ttl = ttl
        self._metrics: dict[str, Metric] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def _load(self) -> None:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "select metric_key, allow_negative, aggregation from app.metrics"
            ).fetchall()
        self._metrics = {key: Metric(key, allow, aggregation) for key, allow, aggregation in rows}
        self._loaded_at = time.monotonic()

    def current(self, wanted: set[str] | None = None) -> dict[str, Metric]:
        age = time.monotonic() - self._loaded_at
        unknown = wanted is not None and not wanted <= self._metrics.keys()
        if age > self._ttl or (unknown and age > 1.0):
            with self._lock:
                self._load()
        return self._metrics
