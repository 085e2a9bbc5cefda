"""The Python client (batching, retries keeping idempotency keys, flush on exit) and the
metering middleware, against a live `billing serve`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ingest.client import BillingClient
from ingest.middleware import UsageMeteringMiddleware
from tests.helpers import REPO, ApiServer, free_port
from tests.ingest.conftest import ADMIN_KEY


class FlakyTransport(httpx.HTTPTransport):
    """Fails every other request: alternately before sending and after the server committed
    (the response is lost), the two ways a retry can double count."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.bodies: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.bodies.append(request.read())
        if self.calls % 4 == 1:
            raise httpx.ConnectError("injected: connection refused")
        response = super().handle_request(request)
        if self.calls % 4 == 2:
            response.read()
            raise httpx.ReadTimeout("injected: response lost after commit")
        return response


def raw_keys(url: str) -> Counter[str]:
    with psycopg.connect(url) as conn:
        return Counter(r[0] for r in conn.execute("select idempotency_key from raw.events"))


def test_client_batches_and_retries_with_the_same_keys(
    server: ApiServer, catalog_loaded: str
) -> None:
    transport = FlakyTransport()
    client = BillingClient(
        server.url,
        ADMIN_KEY,
        batch_size=100,
        flush_interval=0.05,
        backoff=0.01,
        transport=transport,
    )
    keys = [client.track("acme", "api_calls", 2) for _ in range(450)]
    assert client.flush(timeout=60)
    client.close()
    assert client.sent == 450 and client.failed == 0
    assert all(len(body) < 100 * 400 for body in transport.bodies)  # batched, <= 100 each
    stored = raw_keys(catalog_loaded)
    assert set(stored) == set(keys)
    assert any(n > 1 for n in stored.values())  # a lost response was retried...
    assert sum(stored.values()) > 450  # ...with the same keys, so dedup counts each once


def test_client_gives_up_on_a_4xx_and_reports_it(server: ApiServer) -> None:
    dropped: list[int] = []
    client = BillingClient(
        server.url,
        ADMIN_KEY,
        flush_interval=0.05,
        on_error=lambda err, batch: dropped.append(err.status),
    )
    client.track("acme", "no_such_metric", 1)
    client.close()
    assert dropped == [422] and client.failed == 1


def test_client_flushes_at_interpreter_exit(server: ApiServer, catalog_loaded: str) -> None:
    script = textwrap.dedent(f"""
        from ingest.client import BillingClient
        client = BillingClient({server.url!r}, {ADMIN_KEY!r}, flush_interval=3600)
        for i in range(25):
            client.track("globex", "builds", 1, idempotency_key=f"exit-{{i}}")
        # no flush, no close: atexit must send them
    """)
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=60)
    assert set(raw_keys(catalog_loaded)) == {f"exit-{i}" for i in range(25)}


def test_middleware_meters_authenticated_requests(server: ApiServer, catalog_loaded: str) -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    def tenant_of(scope: dict) -> str | None:  # type: ignore[type-arg]
        headers = dict(scope["headers"])
        tenant = headers.get(b"x-tenant")
        return tenant.decode() if tenant else None

    client = BillingClient(server.url, ADMIN_KEY, flush_interval=0.05)
    app = Starlette(routes=[Route("/hello", hello)])
    app.add_middleware(UsageMeteringMiddleware, client=client, tenant_of=tenant_of)
    with TestClient(app) as http:
        for _ in range(5):
            assert http.get("/hello", headers={"x-tenant": "acme"}).text == "hi"
        assert http.get("/hello").status_code == 200  # anonymous: not metered
    client.close()
    with psycopg.connect(catalog_loaded) as conn:
        rows = conn.execute("select tenant_id, metric, amount from raw.events").fetchall()
    assert [(t, m, int(a)) for t, m, a in rows] == [("acme", "api_calls", 1)] * 5


class TroubledApi(httpx.HTTPTransport):
    """The real API behind an outage: refused connections until ``down_until``, then two
    500s, and a 413 for any body over ``max_body`` (a proxy with a lower limit than ours)."""

    def __init__(self, down_for: float, max_body: int) -> None:
        super().__init__()
        self.down_until = time.monotonic() + down_for
        self.max_body = max_body
        self.errors = 2
        self.seen: Counter[int | str] = Counter()
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        with self.lock:
            if time.monotonic() < self.down_until:
                self.seen["down"] += 1
                raise httpx.ConnectError("injected: the API is down")
            if self.errors:
                self.errors -= 1
                self.seen[500] += 1
                return httpx.Response(500, json={"error": {"code": "x", "message": "boom"}})
            if len(body) > self.max_body:
                self.seen[413] += 1
                return httpx.Response(413, json={"error": {"code": "x", "message": "big"}})
        response = super().handle_request(request)
        self.seen[response.status_code] += 1
        assert "partial=true" in str(request.url)
        return response


def test_client_loses_no_valid_event_through_an_outage_413_422_and_500(
    server: ApiServer, catalog_loaded: str
) -> None:
    api = TroubledApi(down_for=2.0, max_body=64 * 1024)
    refused: list[dict] = []  # type: ignore[type-arg]
    client = BillingClient(
        server.url,
        ADMIN_KEY,
        batch_size=1_000,
        flush_interval=0.05,
        backoff=0.05,
        max_backoff=0.3,
        transport=api,
        on_error=lambda err, events: refused.extend(events),
    )
    started = time.monotonic()
    keys = [client.track("acme", "api_calls", 1, idempotency_key=f"ok-{i}") for i in range(2_000)]
    bad = [client.track("acme", "no_such_metric", 1, idempotency_key=f"bad-{i}") for i in range(5)]
    assert time.monotonic() - started < 1.0  # tracking never waited for the API
    assert client.flush(timeout=120)
    client.close()
    assert api.seen["down"] and api.seen[500] == 2 and api.seen[413]
    assert set(raw_keys(catalog_loaded)) == set(keys)  # every valid event, once
    assert sorted(e["idempotency_key"] for e in refused) == sorted(bad)
    assert (client.sent, client.failed, client.dropped) == (2_000, 5, 0)


def test_client_cuts_batches_at_5_mib(server: ApiServer, catalog_loaded: str) -> None:
    transport = FlakyTransport()
    transport.calls = 2  # no injected failure on the first requests
    client = BillingClient(
        server.url, ADMIN_KEY, batch_size=2_000, flush_interval=0.5, transport=transport
    )
    metadata = {"note": "x" * 3_900}  # just under the 4 KiB metadata limit
    keys = [client.track("acme", "api_calls", 1, metadata=metadata) for _ in range(2_000)]
    client.close()
    assert all(len(body) <= 5 * 1024 * 1024 for body in transport.bodies)
    assert len(transport.bodies) >= 2 and client.failed == 0
    assert set(raw_keys(catalog_loaded)) == set(keys)


def test_a_full_buffer_drops_counts_and_logs_and_never_blocks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = BillingClient(down, "key", max_queue=100, flush_interval=0.01, backoff=0.05)
    started = time.monotonic()
    with caplog.at_level("ERROR", logger="billing.client"):
        for i in range(1_000):
            client.track("acme", "api_calls", 1, idempotency_key=str(i))
    assert time.monotonic() - started < 1.0
    # the buffer holds 100, the sender holds one batch; the rest is dropped, counted
    assert 0 < client.dropped < 1_000
    assert any("dropped" in record.message for record in caplog.records)
    client.close(timeout=0.5)  # the API never came back: the rest is dropped too, and said
    assert client.dropped == 1_000 and client.sent == 0


def test_a_timestamp_without_an_offset_is_refused_when_tracked() -> None:
    """`datetime.now()` (no zone) was sent, refused by the API (422: no UTC offset), and the
    event went to on_error: every event of a caller that forgot the zone was lost, and said
    so only in a log. track() refuses it at once, naming `timestamp`."""
    client = BillingClient(f"http://127.0.0.1:{free_port()}", "key", flush_interval=0.01)
    with pytest.raises(ValueError, match="timestamp: 2026-10-01T12:00:00 has no UTC offset"):
        client.track("acme", "api_calls", 1, timestamp=datetime(2026, 10, 1, 12))
    client.track("acme", "api_calls", 1, timestamp=datetime(2026, 10, 1, 12, tzinfo=UTC))
    client.close(timeout=0.2)  # nothing listens: the aware one is dropped, and counted
    assert client.dropped == 1


def test_middleware_never_blocks_the_event_loop_while_the_api_is_down() -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    down = f"http://127.0.0.1:{free_port()}"
    client = BillingClient(down, "key", max_queue=10, flush_interval=0.01)
    app = Starlette(routes=[Route("/hello", hello)])
    app.add_middleware(UsageMeteringMiddleware, client=client, tenant_of=lambda scope: "acme")
    started = time.monotonic()
    with TestClient(app) as http:
        for _ in range(300):
            assert http.get("/hello").text == "hi"
    assert time.monotonic() - started < 30
    assert client.dropped > 0  # past the buffer of 10 and the batch in hand
    client.close(timeout=0.2)
