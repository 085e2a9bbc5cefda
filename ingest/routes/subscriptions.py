"""Subscription changes, appended to the history the dbt engine reads, and the reads of a
subscription's state (the answer every change gives)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from ingest.auth import Principal
from ingest.bodies import json_body, read_model
from ingest.deps import authenticate
from ingest.errors import ApiError
from ingest.routes.reads import RequiredTenant, require_cataloged, tenant_of
from ingest.schemas import Rfc3339
from warehouse.catalog import ID_PATTERN, KEY_PATTERN
from warehouse.subscriptions import (
    SubscriptionError,
    cancel,
    change_plan,
    start,
    subscription_state,
    tenant_subscriptions,
)

router = APIRouter(tags=["subscriptions"])


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(pattern=ID_PATTERN, examples=["acme"])
    plan: str = Field(
        pattern=KEY_PATTERN, description="A plan key of the catalog", examples=["pro"]
    )
    start: Rfc3339 | None = Field(default=None, description="Default: now.")
    id: str | None = Field(default=None, pattern=ID_PATTERN, description="Default: generated.")


class ChangePlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: str = Field(
        pattern=KEY_PATTERN, description="A plan key of the catalog", examples=["pro"]
    )
    at: Rfc3339 | None = Field(default=None, description="Default: now.")


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at_period_end: StrictBool
    at: Rfc3339 | None = Field(default=None, description="Default: now.")


# warehouse.subscriptions says what kind of problem a change has; this says its HTTP status
SUBSCRIPTION_ERRORS = {
    "invalid": (422, "invalid_request"),
    "not_found": (404, "not_found"),
    "conflict": (409, "conflict"),
    "forbidden": (403, "forbidden"),
}


async def _run(
    request: Request, principal: Principal, now: datetime, action: Any, *args: Any
) -> dict[str, Any]:
    # a tenant key acts from now on only; backdating is the admin's (warehouse.subscriptions)
    earliest = None if principal.is_admin else now

    def work() -> dict[str, Any]:
        with request.app.state.pool.connection() as conn:
            state = action(conn, *args, earliest=earliest)
            return state.as_json(now)

    try:
        return await run_in_threadpool(work)
    except SubscriptionError as exc:
        status, code = SUBSCRIPTION_ERRORS[exc.kind]
        raise ApiError(
            status, code, str(exc), [{"field": exc.field, "message": str(exc)}]
        ) from None


async def _owned(request: Request, principal: Principal, subscription_id: str) -> None:
    def owner() -> str | None:
        with request.app.state.pool.connection() as conn:
            row = conn.execute(
                "select tenant_id from raw.subscription_events where subscription_id = %s "
                "order by event_seq limit 1",
                (subscription_id,),
            ).fetchone()
        return None if row is None else str(row[0])

    tenant = await run_in_threadpool(owner)
    if tenant is None:
        raise ApiError(404, "not_found", f"no subscription {subscription_id!r}")
    if not principal.may_act_for(tenant):
        raise ApiError(403, "forbidden", f"this key acts only for tenant {principal.tenant_id!r}")


@router.post("/v1/subscriptions", status_code=201, openapi_extra=json_body(SubscriptionIn))
async def create_subscription(
    request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> dict[str, Any]:
    body = await read_model(request, SubscriptionIn)
    now = datetime.now(UTC)
    if not principal.may_act_for(body.tenant_id):
        raise ApiError(403, "forbidden", f"this key acts only for tenant {principal.tenant_id!r}")
    return await _run(
        request,
        principal,
        now,
        start,
        body.tenant_id,
        body.plan,
        body.start or now,
        body.id,
    )


SubscriptionId = Annotated[
    str, Path(pattern=ID_PATTERN, description="The subscription's id", examples=["sub_acme"])
]


@router.post(
    "/v1/subscriptions/{subscription_id}/change-plan", openapi_extra=json_body(ChangePlanIn)
)
async def change_subscription_plan(
    subscription_id: SubscriptionId,
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
) -> dict[str, Any]:
    await _owned(request, principal, subscription_id)
    body = await read_model(request, ChangePlanIn)
    now = datetime.now(UTC)
    return await _run(
        request, principal, now, change_plan, subscription_id, body.plan, body.at or now
    )


@router.post("/v1/subscriptions/{subscription_id}/cancel", openapi_extra=json_body(CancelIn))
async def cancel_subscription(
    subscription_id: SubscriptionId,
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
) -> dict[str, Any]:
    await _owned(request, principal, subscription_id)
    body = await read_model(request, CancelIn)
    now = datetime.now(UTC)
    return await _run(
        request,
        principal,
        now,
        cancel,
        subscription_id,
        body.at or now,
        body.at_period_end,
    )


@router.get(
    "/v1/subscriptions/{subscription_id}",
    summary="A subscription as it stands: its plan now, its next change and its history",
)
async def get_subscription(
    subscription_id: SubscriptionId,
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
) -> dict[str, Any]:
    await _owned(request, principal, subscription_id)
    now = datetime.now(UTC)

    def read() -> dict[str, Any]:
        with request.app.state.pool.connection() as conn:
            return subscription_state(conn, subscription_id).as_json(now)

    return await run_in_threadpool(read)


@router.get(
    "/v1/subscriptions",
    summary="A tenant's subscriptions, ended and scheduled ones included, the oldest first",
)
async def list_subscriptions(
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
    tenant_id: RequiredTenant = None,
) -> dict[str, Any]:
    tenant = tenant_of(principal, tenant_id, required=True)
    now = datetime.now(UTC)

    def read() -> list[dict[str, Any]]:
        with request.app.state.pool.connection() as conn:
            require_cataloged(conn, principal, tenant)
            return [state.as_json(now) for state in tenant_subscriptions(conn, tenant)]

    return {"tenant_id": tenant, "as_of": now, "subscriptions": await run_in_threadpool(read)}
