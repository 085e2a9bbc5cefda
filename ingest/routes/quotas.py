"""POST /v1/quotas/check: check-and-increment against the plan's quota for this month."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ingest.auth import Principal
from ingest.bodies import read_model
from ingest.deps import authenticate
from ingest.errors import ApiError
from ingest.quotas import QuotaRefused, check_quota
from ingest.schemas import MAX_KEY_CHARS, TENANT_RE, parse_amount

router = APIRouter(tags=["quotas"])


class QuotaCheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(pattern=f"^{TENANT_RE.pattern}$")
    metric: str = Field(min_length=1, max_length=64)
    amount: Decimal = Field(description="How much more to use: a positive decimal.")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=MAX_KEY_CHARS)

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


@router.post(
    "/v1/quotas/check",
    response_model=QuotaCheckOut,
    responses={429: {"model": QuotaCheckOut, "description": "Over a hard limit"}},
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": QuotaCheckIn.model_json_schema()}}
        }
    },
)
async def quota_check(
    request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> Any:
    body = await read_model(request, QuotaCheckIn)
    if not principal.may_act_for(body.tenant_id):
        raise ApiError(403, "forbidden", f"this key acts only for tenant {principal.tenant_id!r}")
    now = datetime.now(UTC)
    metric = request.app.state.metrics.current({body.metric}).get(body.metric)
    if metric is None:
        message = f"unknown metric {body.metric!r}"
        raise ApiError(422, "invalid_request", message, [{"field": "metric", "message": message}])

    try:
        decision = await check_quota(
            request.app.state.async_pool,
            request.app.state.pool,
            body.tenant_id,
            body.metric,
            metric.aggregation,
            body.amount,
            body.idempotency_key,
            now,
        )
    except QuotaRefused as exc:
        raise ApiError(
            422, "invalid_request", str(exc), [{"field": exc.field, "message": str(exc)}]
        ) from None
    # a Response as is: the body is built once, not validated again against response_model
    if decision.allowed:
        return JSONResponse(decision.as_json())
    return JSONResponse(
        decision.as_json(),
        status_code=429,
        headers={"Retry-After": str(decision.retry_after(now))},
    )
