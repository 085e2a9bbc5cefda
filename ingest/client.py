"""A Python client for POST /v1/events: batches, retries with backoff, keeps each event's
idempotency key across retries, and flushes on exit.

    client = BillingClient("http://127.0.0.1:8080", api_key)
    client.track("acme", "api_calls", 1)
    client.close()   # or rely on the flush at interpreter exit
"""

from __future__ import annotations

import atexit
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

log = logging.getLogger("billing.client")

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class BillingError(RuntimeError):
    """The API refused a batch for good (a 4xx other than a rate limit)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class BillingClient:
    """Thread-safe: ``track`` only enqueues; a background thread sends batches."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        batch_size: int = 1_000,
        flush_interval: float = 1.0,
        max_retries: int = 8,
        backoff: float = 0.2,
        max_backoff: float = 10.0,
        timeout: float = 30.0,
        max_queue: int = 1_000_000,
        transport: httpx.BaseTransport | None = None,
        on_error: Callable[[BillingError, list[dict[str, Any]]], None] | None = None,
    ) -> None:
        if not 1 <= batch_size <= 10_000:
            raise ValueError("batch_size must be 1..10000 (the API's limit a request)")
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.on_error = on_error
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue)
        self._pending = 0
        self._idle = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="billing-client", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def track(
        self,
        tenant_id: str,
        metric: str,
        amount: Decimal | int | str = 1,
        *,
        timestamp: datetime | None = None,
        idempotency_key: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Enqueue one event; return its idempotency key (made here, kept across retries)."""
        if self._closed:
            raise RuntimeError("the client is closed")
        key = idempotency_key or uuid.uuid4().hex
        event: dict[str, Any] = {
            "tenant_id": tenant_id,
            "metric": metric,
            "amount": str(amount),
            "timestamp": (timestamp or datetime.now(UTC)).isoformat(),
            "idempotency_key": key,
        }
        if metadata is not None:
            event["metadata"] = metadata
        with self._idle:
            self._pending += 1
        self._queue.put(event)
        return key

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event tracked so far is sent or given up; False on timeout."""
        self._queue.put(None)  # wake the sender so it does not wait for flush_interval
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = 60.0) -> None:
        """Flush and stop. Safe to call twice; called at interpreter exit."""
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
        self._http.close()
        atexit.unregister(self.close)

    def _run(self) -> None:
        while True:
            batch: list[dict[str, Any]] = []
            deadline = time.monotonic() + self.flush_interval
            wake = False
            while len(batch) < self.batch_size:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    wake = True
                    break
                batch.append(item)
            if batch:
                self._send(batch)
                with self._idle:
                    self._pending -= len(batch)
                    self._idle.notify_all()
            if self._closed and (wake or self._queue.empty()) and self._pending == 0:
                return

    def _send(self, batch: list[dict[str, Any]]) -> None:
        body = {"events": batch}
        for attempt in range(self.max_retries + 1):
            try:
                response = self._http.post("/v1/events", json=body)
            except httpx.TransportError as exc:
                log.warning("billing: send failed (%s), attempt %d", exc, attempt + 1)
            else:
                if response.status_code == 200:
                    self.sent += len(batch)
                    return
                if response.status_code not in RETRYABLE_STATUS:
                    self._give_up(BillingError(response.status_code, _json(response)), batch)
                    return
                log.warning("billing: HTTP %d, attempt %d", response.status_code, attempt + 1)
            if attempt < self.max_retries:
                delay = min(self.max_backoff, self.backoff * 2**attempt)
                time.sleep(delay * random.uniform(0.5, 1.0))
        self._give_up(BillingError(0, "retries exhausted"), batch)

    def _give_up(self, error: BillingError, batch: list[dict[str, Any]]) -> None:
        self.failed += len(batch)
        log.error("billing: dropped %d events: %s", len(batch), error)
        if self.on_error is not None:
            self.on_error(error, batch)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
