"""POST /v1/quotas/check: check-and-increment against the plan's quota for this month."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ingest.bodies import MAX_SMALL_BODY, json_body, parse_model, read_body
from ingest.deps import principal_for
from ingest.errors import ApiError, error_body
from ingest.quotas import QuotaRefused, check_quota
from ingest.schemas import MAX_KEY_CHARS, amount_schema, parse_amount, storable
from warehouse.catalog import ID_PATTERN, KEY_PATTERN

router = APIRouter(tags=["quotas"])


class QuotaCheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(pattern=ID_PATTERN, examples=["acme"])
    metric: str = Field(
        pattern=KEY_PATTERN, description="A metric key of the catalog", examples=["api_calls"]
    )
    amount: Annotated[Decimal, amount_schema(positive=True)] = Field(
        description="How much more to use: a positive decimal.", examples=["1"]
    )
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=MAX_KEY_CHARS)

    @field_validator("idempotency_key")
    @classmethod
    def _storable_key(cls, value: str | None) -> str | None:
        if value is not None and not storable(value):
            raise ValueError("must hold no NUL and no lone surrogate")
        return value

    @field_validator("amount", mode="before")
    @classmethod
    def _exact_positive(cls, value: Any) -> Decimal:
        amount = parse_amount(value)
        if amount <= 0:
            raise ValueError("must be above 0")
        return amount


class QuotaCheckOut(BaseModel):
    allowed: bool
    used: str = Field(description="Used this month after this check (a decimal string).")
    limit: str | None
    remaining: str | None
    policy: str = Field(description="`hard`, `soft`, or `none` when the plan sets no quota.")
    period_end: datetime
    overage: bool = Field(description="A soft limit is exceeded.")
    replayed: bool = Field(description="A retry of an idempotency key seen before.")


async def answer(
    state: Any, authorization: str, body: bytes
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """One quota check from the raw request: (status, JSON body, extra headers)."""
    principal = await principal_for(state.keys, authorization)
    check = parse_model(body, QuotaCheckIn)
    if not principal.may_act_for(check.tenant_id):
        raise ApiError(403, "forbidden", f"this key acts only for tenant {principal.tenant_id!r}")
    now = datetime.now(UTC)
    metric = state.metrics.current({check.metric}).get(check.metric)
    if metric is None:
        message = f"unknown metric {check.metric!r}"
        raise ApiError(422, "invalid_request", message, [{"field": "metric", "message": message}])
    try:
        decision = await check_quota(
            state.quota_lane,
            state.pool,
            state.quota_exceeded,
            check.tenant_id,
            check.metric,
            metric.aggregation,
            check.amount,
            check.idempotency_key,
            now,
        )
    except QuotaRefused as exc:
        raise ApiError(
            422, "invalid_request", str(exc), [{"field": exc.field, "message": str(exc)}]
        ) from None
    payload = json.dumps(decision.as_json()).encode()
    if decision.allowed:
        return 200, payload, []
    return 429, payload, [(b"retry-after", str(decision.retry_after(now)).encode())]


def is_check(scope: Any) -> bool:
    """Whether an ASGI request is ``POST /v1/quotas/check`` (``serve_check`` answers it)."""
    return (
        scope["type"] == "http"
        and scope["method"] == "POST"
        and scope["path"] == "/v1/quotas/check"
    )


async def serve_check(state: Any, scope: Any, receive: Any, send: Any) -> None:
    """Answer a quota check straight from ASGI, ahead of the app's middleware and routing.

    The check is the API's hot path (thousands a second, a p99 of milliseconds): the
    middleware, routing and dependency injection cost more than the check, so the app
    (``ingest.app.BillingAPI``) skips them. The answers are the route's own (``answer``),
    errors included.
    """
    authorization = next(
        (v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), ""
    )
    try:
        status, body, headers = await answer(
            state, authorization, await read_body(Request(scope, receive), MAX_SMALL_BODY)
        )
    except ApiError as exc:
        status, headers = (
            exc.status,
            list((k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()),
        )
        body = json.dumps(error_body(exc.code, exc.message, exc.details)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


@router.post(
    "/v1/quotas/check",
    response_model=QuotaCheckOut,
    responses={429: {"model": QuotaCheckOut, "description": "Over a hard limit"}},
    openapi_extra=json_body(QuotaCheckIn),
)
async def quota_check(request: Request) -> Any:
    """Check-and-increment. Served by ``serve_check`` ahead of routing; this route documents
    it and serves an app mounted under another (which routes it here)."""
    status, body, headers = await answer(
        request.app.state,
        request.headers.get("authorization", ""),
        await read_body(request, MAX_SMALL_BODY),
    )
    return Response(
        body,
        status_code=status,
        media_type="application/json",
        headers={k.decode(): v.decode() for k, v in headers},
    )
