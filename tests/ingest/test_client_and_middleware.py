"""The Python client (batching, retries keeping idempotency keys, flush on exit) and the
metering middleware, against a live `billing serve`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter

import httpx
import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ingest.client import BillingClient
from ingest.middleware import UsageMeteringMiddleware
from tests.helpers import REPO, ApiServer
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
