"""GET /healthz: 200 when the warehouse answers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ingest.errors import ApiError

router = APIRouter()


@router.get("/healthz", tags=["health"])
async def healthz(request: Request) -> dict[str, str]:
    def ping() -> None:
        with request.app.state.pool.connection(timeout=5) as conn:
            conn.execute("select 1")

    try:
        await run_in_threadpool(ping)
    except Exception as exc:
        raise ApiError(
            503, "warehouse_unavailable", f"the warehouse does not answer: {exc}"
        ) from exc
    return {"status": "ok"}
