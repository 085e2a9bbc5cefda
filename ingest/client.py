"""A Python client for POST /v1/events: batches, retries with backoff, keeps each event's
idempotency key across retries, and flushes on exit.

    client = BillingClient("http://127.0.0.1:8080", api_key)
    client.track("acme", "api_calls", 1)
    client.close()   # or rely on the flush at interpreter exit

Nothing valid is lost to something else: batches are sent with ``?partial=true`` (an
invalid event goes to ``on_error``, the others are stored), cut at the API's 5 MiB (and
halved again on a 413), and kept through an outage, retried with backoff, while new events
wait in a bounded buffer. ``track`` never blocks: when the buffer is full, the event is
dropped, counted in ``dropped`` and logged.
"""

from __future__ import annotations

import atexit
import contextlib
import json
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

from ingest.schemas import MAX_BODY_BYTES, MAX_EVENTS  # the API's limits a request

log = logging.getLogger("billing.client")

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
WRAPPER = b'{"events": [', b"]}"
DROP_LOG_EVERY = 10.0  # seconds between two log lines about dropped events


class BillingError(RuntimeError):
    """The API refused a batch for good (a 4xx other than a rate limit)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class BillingClient:
    """Thread-safe: ``track`` only enqueues; a background thread sends batches.

    ``sent``: events the API stored; ``failed``: events it refused (to ``on_error``);
    ``dropped``: events never sent, because the buffer (``max_queue`` events) was full or
    the client closed before the API came back."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        batch_size: int = 1_000,
        flush_interval: float = 1.0,
        max_retries: int | None = None,
        backoff: float = 0.2,
        max_backoff: float = 10.0,
        timeout: float = 30.0,
        max_queue: int = 1_000_000,
        transport: httpx.BaseTransport | None = None,
        on_error: Callable[[BillingError, list[dict[str, Any]]], None] | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_EVENTS:
            raise ValueError(f"batch_size must be 1..{MAX_EVENTS} (the API's limit a request)")
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            timeout=timeout,
            transport=transport,
        )
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        # None: retry a batch until the API takes it or the client closes
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.on_error = on_error
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue)
        self._carried: list[tuple[dict[str, Any], bytes]] = []  # did not fit the last batch
        self._pending = 0
        self._idle = threading.Condition()
        self._closed = False
        self._abandon = threading.Event()  # close() gave up waiting: stop retrying
        self._last_drop_log = 0.0
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
        """Enqueue one event and return its idempotency key (made here, kept across
        retries). Never blocks: with the buffer full the event is dropped and counted. A
        ``timestamp`` without a UTC offset is refused here (ValueError)."""
        if self._closed:
            raise RuntimeError("the client is closed")
        if timestamp is not None and timestamp.utcoffset() is None:
            # the API would refuse it (no UTC offset) and the event would be lost
            raise ValueError(
                f"timestamp: {timestamp.isoformat()} has no UTC offset; "
                "pass an aware datetime such as datetime.now(UTC)"
            )
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
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._drop(1, "the buffer is full")
        return key

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event tracked so far is sent or given up; False on timeout."""
        self._wake()
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = 60.0) -> None:
        """Flush and stop; what the API has not taken by ``timeout`` is dropped (counted and
        logged). Safe to call twice; called at interpreter exit."""
        if self._closed:
            return
        flushed = self.flush(timeout)
        self._closed = True
        if not flushed:
            self._abandon.set()
        self._wake()
        self._thread.join(timeout)
        self._http.close()
        atexit.unregister(self.close)

    def _wake(self) -> None:
        # the sender stops waiting for flush_interval (with a full buffer, it does not wait)
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)

    def _drop(self, count: int, why: str, *, always_log: bool = False) -> None:
        with self._idle:
            self.dropped += count
            self._pending -= count
            self._idle.notify_all()
            now = time.monotonic()
            if now - self._last_drop_log < DROP_LOG_EVERY and not always_log:
                return
            self._last_drop_log = now
        log.error("billing: dropped %d events (%d in all): %s", count, self.dropped, why)

    def _done(self, count: int) -> None:
        with self._idle:
            self._pending -= count
            self._idle.notify_all()

    def _next_batch(self) -> list[tuple[dict[str, Any], bytes]]:
        """Up to batch_size events and 5 MiB, waiting at most flush_interval (or until a
        flush or a close asks)."""
        batch, self._carried = self._carried, []
        size = sum(len(encoded) + 1 for _, encoded in batch) + sum(map(len, WRAPPER))
        deadline = time.monotonic() + self.flush_interval
        while len(batch) < self.batch_size:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return batch
            if item is None:
                return batch
            encoded = json.dumps(item, separators=(",", ":")).encode()
            if size + len(encoded) + 1 > MAX_BODY_BYTES:
                if not batch:  # alone over the limit: the API will never take it
                    self._refuse(BillingError(413, "one event over 5 MiB"), [item])
                    continue
                self._carried = [(item, encoded)]
                return batch
            batch.append((item, encoded))
            size += len(encoded) + 1
        return batch

    def _run(self) -> None:
        while not self._abandon.is_set():
            batch = self._next_batch()
            if batch:
                self._send(batch)
            if self._closed and self._pending <= 0:
                return
        # close() stopped waiting for the API: what is still buffered is dropped
        left = len(self._carried)
        self._carried = []
        while True:
            try:
                left += self._queue.get_nowait() is not None
            except queue.Empty:
                break
        if left:
            self._drop(left, "the client closed before the API took them", always_log=True)

    def _send(self, batch: list[tuple[dict[str, Any], bytes]]) -> None:
        events = [event for event, _ in batch]
        body = WRAPPER[0] + b",".join(encoded for _, encoded in batch) + WRAPPER[1]
        attempt = 0
        while True:
            if self._abandon.is_set():
                self._drop(
                    len(batch), "the client closed before the API took them", always_log=True
                )
                return
            try:
                response = self._http.post("/v1/events", params={"partial": "true"}, content=body)
            except httpx.TransportError as exc:
                log.warning("billing: send failed (%s), attempt %d", exc, attempt + 1)
            else:
                if response.status_code == 200:
                    self._accepted(events, _json(response))
                    return
                if response.status_code == 413 and len(batch) > 1:
                    half = len(batch) // 2  # the server's limit is lower than ours
                    self._send(batch[:half])
                    self._send(batch[half:])
                    return
                if response.status_code not in RETRYABLE_STATUS:
                    self._refuse(BillingError(response.status_code, _json(response)), events)
                    return
                log.warning("billing: HTTP %d, attempt %d", response.status_code, attempt + 1)
            attempt += 1
            if self.max_retries is not None and attempt > self.max_retries:
                self._refuse(BillingError(0, f"no answer after {attempt} attempts"), events)
                return
            delay = min(self.max_backoff, self.backoff * 2 ** min(attempt - 1, 30))
            self._abandon.wait(delay * random.uniform(0.5, 1.0))

    def _accepted(self, events: list[dict[str, Any]], answer: Any) -> None:
        rejected = answer.get("rejected", []) if isinstance(answer, dict) else []
        refused = {int(r["index"]) for r in rejected if isinstance(r, dict) and "index" in r}
        with self._idle:
            self.sent += len(events) - len(refused)
        self._done(len(events) - len(refused))
        if refused:
            self._refuse(
                BillingError(422, rejected), [e for i, e in enumerate(events) if i in refused]
            )

    def _refuse(self, error: BillingError, events: list[dict[str, Any]]) -> None:
        with self._idle:
            self.failed += len(events)
        log.error("billing: the API refused %d events: %s", len(events), error)
        self._done(len(events))
        if self.on_error is not None:
            self.on_error(error, events)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
