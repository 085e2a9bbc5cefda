"""Request dependencies: who is calling."""

from __future__ import annotations

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from ingest.auth import KeyResolver, Principal
from ingest.errors import ApiError


async def authenticate(request: Request) -> Principal:
    return await principal_for(request.app.state.keys, request.headers.get("authorization", ""))


async def principal_for(keys: KeyResolver, header: str) -> Principal:
    """The caller of an ``Authorization: Bearer KEY`` header, or a 401."""
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthorized", "missing API key: send Authorization: Bearer KEY")
    known, principal = keys.cached(key.strip())
    if not known:  # a database lookup: off the event loop
        principal = await run_in_threadpool(keys.resolve, key.strip())
    if principal is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key")
    assert isinstance(principal, Principal)
    return principal


def require_admin(principal: Principal, what: str) -> None:
    """A 403 unless the admin key is calling; ``what`` says what only the admin does."""
    if not principal.is_admin:
        raise ApiError(403, "forbidden", f"only the admin key {what}")
