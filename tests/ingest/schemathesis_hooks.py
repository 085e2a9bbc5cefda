"""Schemathesis hooks for the API's fuzz test: how to send an NDJSON body (one JSON value a
line), a media type schemathesis has no serializer for."""

from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: Any, value: Any) -> bytes:
    if isinstance(value, str | bytes):
        return value.encode() if isinstance(value, str) else value
    return json.dumps(value).encode()
