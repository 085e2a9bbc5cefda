"""Request dependencies: who is calling."""

from __future__ import annotations

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from ingest.auth import Principal
from ingest.errors import ApiError


async def authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthorized", "missing API key: send Authorization: Bearer KEY")
    keys = request.app.state.keys
    known, principal = keys.cached(key.strip())
    if not known:  # a database lookup: off the event loop
        principal = await run_in_threadpool(keys.resolve, key.strip())
    if principal is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key")
    assert isinstance(principal, Principal)
    return principal
