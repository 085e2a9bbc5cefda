"""A local fake of the part of Stripe's API the push calls, for tests.

It keeps customers, invoices and invoice items in memory, honours ``Idempotency-Key`` as
Stripe does (a key replays its first response; the same key with other parameters is a 400
``idempotency_error``; a request that failed before executing saves nothing), validates the
currency and the customer, and can fail a chosen request: ``error`` answers 500 before doing
anything, ``drop`` does the work and closes the connection without an answer, ``timeout``
does the work and answers after the client has given up.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.helpers import serve_in_thread

API_KEY = "sk_test_fake"
# The currencies this fake accepts: a sample of Stripe's list (kwd, for one, is not in it).
CURRENCIES = {"usd", "eur", "gbp", "jpy", "chf", "cad", "aud", "sek", "nok", "dkk"}


def sign_webhook(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header for ``payload``, made as Stripe makes it."""
    ts = int(time.time()) if timestamp is None else timestamp
    signed = f"{ts}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def _nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``metadata[a]=1`` -> ``{"metadata": {"a": "1"}}``, as Stripe decodes form bodies."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        match = re.fullmatch(r"(\w+)\[(\w+)\]", key)
        if match:
            out.setdefault(match[1], {})[match[2]] = value
        else:
            out[key] = value
    return out


class StripeApiError(Exception):
    def __init__(self, status: int, kind: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": kind, "message": message, **extra}}


@dataclass
class Fault:
    request_number: int
    mode: str  # error | drop | timeout


@dataclass
class FakeStripe:
    """State and behaviour; ``FakeStripeServer`` puts it on a port."""

    customers: set[str] = field(default_factory=set)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotency: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    timeout_seconds: float = 1.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _clock: itertools.count[int] = field(default_factory=lambda: itertools.count(1_800_000_000))

    # -- the API ------------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, params: dict[str, Any], key: str | None
    ) -> tuple[int, dict[str, Any]]:
        fingerprint = json.dumps([method, path, params], sort_keys=True)
        if method == "POST" and key is not None and key in self.idempotency:
            saved_fingerprint, status, body = self.idempotency[key]
            if saved_fingerprint != fingerprint:
                raise StripeApiError(
                    400,
                    "idempotency_error",
                    f"Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with. Try using a key other than '{key}'.",
                )
            return status, body
        try:
            status, body = 200, self._route(method, path, params)
        except StripeApiError as exc:
            if exc.status >= 500:
                raise
            status, body = exc.status, exc.body
        if method == "POST" and key is not None:
            self.idempotency[key] = (fingerprint, status, body)
        return status, body

    def _route(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "GET" and path == "/v1/invoices":
            rows = [i for i in self.invoices.values() if i["customer"] == params.get("customer")]
            gte = int((params.get("created") or {}).get("gte", 0))
            rows = [i for i in rows if i["created"] >= gte]
            return self._page(list(reversed(rows)), params, path)
        if method == "POST" and path == "/v1/invoices":
            return self._create_invoice(params)
        match = re.fullmatch(r"/v1/invoices/(in_\w+)(/finalize)?", path)
        if match:
            invoice = self._invoice(match[1])
            if method == "GET" and not match[2]:
                return invoice
            if method == "POST" and match[2]:
                return self._finalize(invoice)
        if method == "GET" and path == "/v1/invoiceitems":
            rows = [i for i in self.items.values() if i["invoice"] == params.get("invoice")]
            return self._page(rows, params, path)
        if method == "POST" and path == "/v1/invoiceitems":
            return self._create_item(params)
        raise StripeApiError(404, "invalid_request_error", f"Unrecognized request URL ({path}).")

    def _page(self, rows: list[dict[str, Any]], params: dict[str, Any], url: str) -> dict[str, Any]:
        after = params.get("starting_after")
        if after:
            ids = [row["id"] for row in rows]
            rows = rows[ids.index(after) + 1 :] if after in ids else []
        limit = int(params.get("limit", 10))
        return {"object": "list", "url": url, "data": rows[:limit], "has_more": len(rows) > limit}

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}"

    def _customer(self, params: dict[str, Any]) -> str:
        customer = params.get("customer")
        if customer not in self.customers:
            raise StripeApiError(
                400,
                "invalid_request_error",
                f"No such customer: '{customer}'",
                code="resource_missing",
                param="customer",
            )
        return str(customer)

    def _currency(self, params: dict[str, Any]) -> str:
        currency = str(params.get("currency", "")).lower()
        if currency not in CURRENCIES:
            raise StripeApiError(
                400,
                "invalid_request_error",
                f"Invalid currency: {currency}. Stripe currently supports these currencies: "
                + ", ".join(sorted(CURRENCIES)),
                param="currency",
            )
        return currency

    def _invoice(self, invoice_id: str) -> dict[str, Any]:
        if invoice_id not in self.invoices:
            raise StripeApiError(
                404,
                "invalid_request_error",
                f"No such invoice: '{invoice_id}'",
                code="resource_missing",
                param="id",
            )
        return self.invoices[invoice_id]

    def _create_invoice(self, params: dict[str, Any]) -> dict[str, Any]:
        customer, currency = self._customer(params), self._currency(params)
        invoice = {
            "id": self._next_id("in"),
            "object": "invoice",
            "customer": customer,
            "currency": currency,
            "status": "draft",
            "created": next(self._clock),
            "description": params.get("description"),
            "metadata": params.get("metadata", {}),
            "auto_advance": params.get("auto_advance") == "true",
            "total": 0,
        }
        self.invoices[invoice["id"]] = invoice
        return invoice

    def _create_item(self, params: dict[str, Any]) -> dict[str, Any]:
        customer, currency = self._customer(params), self._currency(params)
        invoice = self._invoice(str(params.get("invoice")))
        if invoice["status"] != "draft":
            raise StripeApiError(
                400, "invalid_request_error", "Invoice is not a draft.", param="invoice"
            )
        if invoice["currency"] != currency or invoice["customer"] != customer:
            raise StripeApiError(
                400, "invalid_request_error", "Currency or customer differ from the invoice."
            )
        try:
            amount = int(params["amount"])
        except (KeyError, ValueError):
            raise StripeApiError(
                400, "invalid_request_error", "Invalid integer: amount", param="amount"
            ) from None
        item = {
            "id": self._next_id("ii"),
            "object": "invoiceitem",
            "customer": customer,
            "invoice": invoice["id"],
            "currency": currency,
            "amount": amount,
            "description": params.get("description"),
            "metadata": params.get("metadata", {}),
            "period": params.get("period"),
        }
        self.items[item["id"]] = item
        invoice["total"] += amount
        return item

    def _finalize(self, invoice: dict[str, Any]) -> dict[str, Any]:
        if invoice["status"] != "draft":
            raise StripeApiError(400, "invalid_request_error", "This invoice is already finalized.")
        invoice["status"] = "open" if invoice["total"] > 0 else "paid"
        return invoice

    # -- what tests read ----------------------------------------------------------------------

    def invoice_for(self, billing_invoice_id: str) -> list[dict[str, Any]]:
        return [
            i
            for i in self.invoices.values()
            if i["metadata"].get("billing_invoice_id") == billing_invoice_id
        ]

    def items_of(self, stripe_invoice_id: str) -> list[dict[str, Any]]:
        return [i for i in self.items.values() if i["invoice"] == stripe_invoice_id]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _serve(self, method: str) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        params = _nest(parse_qsl(url.query or body, keep_blank_values=True))
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            self._reply(401, {"error": {"type": "invalid_request_error", "message": "bad key"}})
            return
        with fake.lock:
            number = len(fake.requests)
            fake.requests.append((method, url.path))
            fault = next((f for f in fake.faults if f.request_number == number), None)
            if fault and fault.mode == "error":
                self._reply(500, {"error": {"type": "api_error", "message": "injected"}})
                return
            try:
                status, payload = fake.handle(
                    method, url.path, params, self.headers.get("Idempotency-Key")
                )
            except StripeApiError as exc:
                status, payload = exc.status, exc.body
        if fault and fault.mode == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault and fault.mode == "timeout":
            time.sleep(fake.timeout_seconds + 0.5)
        self._reply(status, payload)

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", f"req_{time.monotonic_ns()}")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeStripe

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a `timeout` fault answers a client that has gone: that is the point, not an error
        if isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            return
        super().handle_error(request, client_address)


class FakeStripeServer:
    """The fake on a free loopback port, in a thread; a context manager."""

    def __init__(self, fake: FakeStripe | None = None) -> None:
        self.fake = fake or FakeStripe()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self.fake
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeStripeServer:
        serve_in_thread(self._server)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
