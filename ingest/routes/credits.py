"""Prepaid credits: GET /v1/credits (the balance per grant and per tenant) and the admin's
POST /v1/credits (a grant) and POST /v1/credits/{grant_id}/void. A grant is never edited:
the same id again with the same terms is the same grant, with other terms a 409."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from ingest.auth import Principal
from ingest.bodies import json_body, read_model, validation_details
from ingest.credits import CREDIT_BALANCES, balances, credit_grants
from ingest.deps import authenticate, require_admin
from ingest.errors import ApiError, NotBuilt, invalid_field
from ingest.routes.reads import require_cataloged, tenant_of
from ingest.schemas import Rfc3339, amount_schema, parse_amount
from warehouse.catalog import (
    ID_PATTERN,
    TEXT_PATTERN,
    CreditGrant,
    RecordConflict,
    check_grant,
    record_grant,
    void_grant,
)
from warehouse.db import relations_exist

router = APIRouter(tags=["credits"])


class CreditGrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(pattern=ID_PATTERN, examples=["acme"])
    amount: Annotated[Decimal | str, amount_schema(positive=True)] = Field(
        description="In the tenant's currency, at most its minor unit's decimals."
    )
    currency: str | None = Field(
        default=None, pattern=r"^[a-z]{3}$", description="Default: the tenant's (the only one)."
    )
    granted_at: Rfc3339 | None = Field(default=None, description="Default: now.")
    expires_at: Rfc3339 | None = Field(default=None, description="Default: never.")
    priority: StrictInt = Field(
        default=0, ge=0, le=1_000_000, description="Grants are used lowest first."
    )
    description: str = Field(default="", max_length=200, pattern=TEXT_PATTERN)
    id: str | None = Field(default=None, pattern=ID_PATTERN, description="Default: generated.")


class VoidIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=200, pattern=TEXT_PATTERN)


@router.get("/v1/credits", summary="Prepaid credit grants and the balance left")
async def get_credits(
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
    tenant_id: Annotated[str | None, Query(description="Admin key only", examples=["acme"])] = None,
) -> dict[str, Any]:
    tenant = tenant_of(principal, tenant_id, required=False)

    def read() -> dict[str, Any]:
        with request.app.state.pool.connection() as conn:
            require_cataloged(conn, principal, tenant)
            if not relations_exist(conn, CREDIT_BALANCES):
                raise NotBuilt("not_built", "credit balances")
            grants = credit_grants(conn, tenant)
        return {"balances": balances(grants), "grants": grants}

    return await run_in_threadpool(read)


@router.post("/v1/credits", status_code=201, openapi_extra=json_body(CreditGrantIn))
async def create_credit_grant(
    request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> dict[str, Any]:
    require_admin(principal, "grants or voids credits")
    body = await read_model(request, CreditGrantIn)
    try:
        amount = parse_amount(body.amount)
    except ValueError as exc:
        raise invalid_field("amount", str(exc)) from None
    try:
        grant = CreditGrant(
            id=body.id or f"grant_{secrets.token_hex(8)}",
            tenant_id=body.tenant_id,
            amount=str(amount),
            currency=body.currency,
            granted_at=body.granted_at or datetime.now(UTC),
            expires_at=body.expires_at,
            priority=body.priority,
            description=body.description,
        )
    except ValidationError as exc:
        detail = validation_details(exc)[0]
        message = detail["message"].removeprefix("Value error, ")
        raise invalid_field(detail["field"], message) from None

    def work() -> dict[str, Any]:
        nonlocal grant
        with request.app.state.pool.connection() as conn, conn.transaction():
            if body.granted_at is None:
                # a retry of a grant that left granted_at to now is the same grant
                recorded = conn.execute(
                    "select granted_at from app.credit_grants where grant_id = %s", (grant.id,)
                ).fetchone()
                if recorded is not None:
                    grant = grant.model_copy(update={"granted_at": recorded[0]})
            row = conn.execute(
                "select currency from app.tenants where tenant_id = %s", (grant.tenant_id,)
            ).fetchone()
            if row is None:
                raise invalid_field("tenant_id", f"unknown tenant {grant.tenant_id!r}")
            for problem in check_grant(grant, row[0]):
                raise invalid_field(problem.path, problem.message)
            try:
                record_grant(conn, grant, row[0], source="api")
            except RecordConflict as exc:
                raise ApiError(
                    409, "conflict", str(exc), [{"field": exc.field, "message": str(exc)}]
                ) from None
        return {
            "grant_id": grant.id,
            "tenant_id": grant.tenant_id,
            "amount": str(grant.amount),
            "currency": grant.currency or row[0],
            "granted_at": grant.granted_at,
            "expires_at": grant.expires_at,
            "priority": grant.priority,
            "description": grant.description,
        }

    return await run_in_threadpool(work)


@router.post("/v1/credits/{grant_id}/void", openapi_extra=json_body(VoidIn))
async def void_credit_grant(
    grant_id: Annotated[
        str, Path(pattern=ID_PATTERN, description="The grant's id", examples=["grant_welcome"])
    ],
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
) -> dict[str, Any]:
    require_admin(principal, "grants or voids credits")
    body = await read_model(request, VoidIn)

    def work() -> dict[str, Any]:
        with request.app.state.pool.connection() as conn, conn.transaction():
            try:
                voided = void_grant(conn, grant_id, body.reason, source="api")
            except KeyError:
                raise ApiError(404, "not_found", f"no credit grant {grant_id!r}") from None
        return {"grant_id": grant_id, "voided": True, "already_voided": not voided}

    return await run_in_threadpool(work)
