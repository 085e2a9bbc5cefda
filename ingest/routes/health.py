"""GET /healthz: 200 when the warehouse answers."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ingest.errors import ApiError

log = logging.getLogger(__name__)

router = APIRouter()


@router.get("/healthz", tags=["health"])
async def healthz(request: Request) -> dict[str, str]:
    def ping() -> None:
        with request.app.state.pool.connection(timeout=5) as conn:
            conn.execute("select 1")

    try:
        await run_in_threadpool(ping)
    except Exception as exc:
        # unauthenticated: say that it failed, never why (the server's log says why)
        log.warning("healthz: the warehouse does not answer: %s", exc)
        raise ApiError(503, "warehouse_unavailable", "the warehouse does not answer") from exc
    return {"status": "ok"}
