"""Schemathesis hooks for the API's fuzz test: how to send an NDJSON body (one JSON value a
line), a media type schemathesis has no serializer for, and Stripe's signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from typing import Any

import schemathesis
from schemathesis.core import NotSet


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: Any, value: Any) -> bytes:
    if isinstance(value, str | bytes):
        return value.encode() if isinstance(value, str) else value
    return json.dumps(value).encode()


@schemathesis.hook
def before_call(ctx: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Sign each Stripe webhook as Stripe would (the server's secret is in
    FUZZ_STRIPE_WEBHOOK_SECRET): a fuzzed body then reaches what the route does with a
    verified event. The body is sent as the exact bytes signed."""
    if case.operation.path != "/v1/webhooks/stripe":
        return
    secret = os.environ["FUZZ_STRIPE_WEBHOOK_SECRET"]
    if isinstance(case.body, bytes):
        body = case.body
    elif isinstance(case.body, NotSet):  # a case without a body: the empty payload is signed
        body = b""
    else:
        body = case.body = json.dumps(case.body).encode()
    timestamp = str(int(time.time()))
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    case.headers = {
        **(case.headers or {}),
        "Stripe-Signature": f"t={timestamp},v1={signature.hexdigest()}",
    }
