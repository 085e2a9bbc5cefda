"""The admin's outbound webhook endpoints: register one (its signing secret is shown once),
list them, disable one, and read an endpoint's delivery log (sync.webhooks_out delivers)."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from ingest.auth import Principal
from ingest.bodies import json_body, read_model
from ingest.deps import authenticate, require_admin
from ingest.errors import ApiError
from warehouse.catalog import ID_PATTERN
from warehouse.outbox import EventType

router = APIRouter(tags=["webhooks"])


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        pattern=r"^https?://[^\s\x00]{1,2000}$", examples=["https://example.com/billing-hooks"]
    )
    event_types: list[EventType] | None = Field(
        default=None, min_length=1, description="Default: every event type."
    )
    tenant_id: str | None = Field(
        default=None, pattern=ID_PATTERN, description="Default: every tenant's events."
    )


EndpointId = Annotated[
    str,
    Path(
        pattern=r"^we_[0-9a-f]{16}$",
        description="The endpoint's id",
        examples=["we_0123456789abcdef"],
    ),
]
COLUMNS = "endpoint_id, url, event_types, tenant_id, created_at, disabled_at"


def _endpoint(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(COLUMNS.split(", "), row, strict=True))


@router.post("/v1/webhook-endpoints", status_code=201, openapi_extra=json_body(EndpointIn))
async def create_endpoint(
    request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> dict[str, Any]:
    require_admin(principal, "manages webhook endpoints")
    body = await read_model(request, EndpointIn)
    endpoint_id, secret = f"we_{secrets.token_hex(8)}", f"whsec_{secrets.token_hex(24)}"

    def work() -> dict[str, Any]:
        with request.app.state.pool.connection() as conn:
            row = conn.execute(
                f"""insert into app.webhook_endpoints
                        (endpoint_id, url, secret, event_types, tenant_id)
                    values (%s, %s, %s, %s, %s) returning {COLUMNS}""",
                (
                    endpoint_id,
                    body.url,
                    secret,
                    Jsonb(sorted(set(body.event_types))) if body.event_types else None,
                    body.tenant_id,
                ),
            ).fetchone()
        # the secret is shown now only: the receiver checks signatures with it
        return _endpoint(row) | {"secret": secret}

    return await run_in_threadpool(work)


@router.get("/v1/webhook-endpoints", summary="The registered endpoints (without secrets)")
async def list_endpoints(
    request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> dict[str, Any]:
    require_admin(principal, "manages webhook endpoints")

    def read() -> dict[str, Any]:
        with request.app.state.pool.connection() as conn:
            rows = conn.execute(
                f"select {COLUMNS} from app.webhook_endpoints order by created_at, endpoint_id"
            ).fetchall()
        return {"endpoints": [_endpoint(row) for row in rows]}

    return await run_in_threadpool(read)


@router.post("/v1/webhook-endpoints/{endpoint_id}/disable")
async def disable_endpoint(
    endpoint_id: EndpointId,
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
) -> dict[str, Any]:
    require_admin(principal, "manages webhook endpoints")

    def work() -> dict[str, Any]:
        with request.app.state.pool.connection() as conn:
            row = conn.execute(
                f"""update app.webhook_endpoints
                    set disabled_at = coalesce(disabled_at, now())
                    where endpoint_id = %s returning {COLUMNS}""",
                (endpoint_id,),
            ).fetchone()
        if row is None:
            raise ApiError(404, "not_found", f"no webhook endpoint {endpoint_id!r}")
        return _endpoint(row)

    return await run_in_threadpool(work)


@router.get(
    "/v1/webhook-endpoints/{endpoint_id}/deliveries",
    summary="The endpoint's deliveries, newest event first, with their attempts",
)
async def list_deliveries(
    endpoint_id: EndpointId,
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
) -> dict[str, Any]:
    require_admin(principal, "manages webhook endpoints")

    def read() -> dict[str, Any]:
        with request.app.state.pool.connection() as conn:
            if (
                conn.execute(
                    "select 1 from app.webhook_endpoints where endpoint_id = %s", (endpoint_id,)
                ).fetchone()
                is None
            ):
                raise ApiError(404, "not_found", f"no webhook endpoint {endpoint_id!r}")
            rows = conn.execute(
                """select w.event_id, w.event_type, w.tenant_id, d.attempts, d.delivered_at,
                          d.next_attempt_at,
                          (select coalesce(a.status_code::text, a.error)
                           from app.webhook_attempts a
                           where a.endpoint_id = d.endpoint_id and a.event_seq = d.event_seq
                           order by a.attempt_seq desc limit 1) as last_outcome
                   from app.webhook_deliveries d
                   join app.webhook_events w on w.event_seq = d.event_seq
                   where d.endpoint_id = %s
                   order by d.event_seq desc limit 500""",
                (endpoint_id,),
            ).fetchall()
        names = (
            "event_id", "event_type", "tenant_id", "attempts", "delivered_at",
            "next_attempt_at", "last_outcome",
        )  # fmt: skip
        return {"deliveries": [dict(zip(names, row, strict=True)) for row in rows]}

    return await run_in_threadpool(read)
