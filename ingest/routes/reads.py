"""Tenant reads: GET /v1/usage (live daily usage) and GET /v1/invoices (with lines).

A tenant key reads only its own tenant: ``tenant_id`` may be left out, and naming another
tenant is a 403. The admin key names the tenant (usage) or may list every tenant (invoices).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, overload

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from ingest.auth import Principal
from ingest.deps import authenticate
from ingest.errors import ApiError
from ingest.usage import MAX_DAYS, daily_usage
from orchestration.dbt_vars import DAY_PATTERN, parse_day
from warehouse.catalog import KEY_PATTERN, tenant_exists
from warehouse.db import relations_exist

router = APIRouter(tags=["reads"])


# the tenant a read names: a tenant key's own by default, the admin key's to name
RequiredTenant = Annotated[
    str | None, Query(description="Required with the admin key", examples=["acme"])
]


@overload
def tenant_of(principal: Principal, tenant_id: str | None, required: Literal[True]) -> str: ...
@overload
def tenant_of(principal: Principal, tenant_id: str | None, required: bool) -> str | None: ...
def tenant_of(principal: Principal, tenant_id: str | None, required: bool) -> str | None:
    """The tenant a request reads: the one the admin names (``required``: it must name one),
    a tenant key's own (naming another is a 403)."""
    if principal.is_admin:
        if tenant_id is None and required:
            raise ApiError(
                422,
                "invalid_request",
                "tenant_id is required with the admin key",
                [{"field": "tenant_id", "message": "required with the admin key"}],
            )
        return tenant_id
    if tenant_id is not None and tenant_id != principal.tenant_id:
        raise ApiError(403, "forbidden", f"this key reads only tenant {principal.tenant_id!r}")
    return principal.tenant_id


def require_cataloged(conn: Any, principal: Principal, tenant: str | None) -> None:
    """The tenant_id an admin names is a tenant of the catalog: a typo read as "none" (an
    empty list). A tenant key reads its own tenant, cataloged or not yet."""
    if principal.is_admin and tenant is not None and not tenant_exists(conn, tenant):
        raise ApiError(
            404,
            "not_found",
            f"unknown tenant {tenant!r}",
            [{"field": "tenant_id", "message": "not a tenant of the catalog"}],
        )


def _day(value: str, name: str) -> date:
    try:
        return parse_day(value)
    except ValueError as exc:
        raise ApiError(
            422, "invalid_request", f"{name}: {exc}", [{"field": name, "message": str(exc)}]
        ) from None


@router.get("/v1/usage", summary="Daily quantities of one metric, including events just sent")
async def get_usage(
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
    metric: Annotated[
        str, Query(pattern=KEY_PATTERN, description="A metric key", examples=["api_calls"])
    ],
    from_: Annotated[
        str,
        Query(
            alias="from",
            json_schema_extra={"pattern": DAY_PATTERN},
            description="First UTC day, YYYY-MM-DD",
            examples=["2026-10-01"],
        ),
    ],
    to: Annotated[
        str,
        Query(
            json_schema_extra={"pattern": DAY_PATTERN},
            description="Last UTC day, included, YYYY-MM-DD",
            examples=["2026-10-31"],
        ),
    ],
    tenant_id: Annotated[str | None, Query(description="Admin key only", examples=["acme"])] = None,
    group_by: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Dimensions of the metric (catalog `dimensions`), comma-separated: "
            "a row per day and combination of their values",
            examples=["model,direction"],
        ),
    ] = None,
) -> dict[str, Any]:
    tenant = tenant_of(principal, tenant_id, required=True)
    first, last = _day(from_, "from"), _day(to, "to")
    names = [] if group_by is None else [name.strip() for name in group_by.split(",")]
    if last < first or last - first >= timedelta(days=MAX_DAYS):
        raise ApiError(
            422,
            "invalid_request",
            f"to must be on or after from, at most {MAX_DAYS} days",
            [{"field": "to", "message": f"on or after from, at most {MAX_DAYS} days"}],
        )

    def read() -> dict[str, Any]:
        with request.app.state.pool.connection() as conn:
            found = conn.execute(
                "select aggregation, dimensions from app.metrics where metric_key = %s",
                (metric,),
            ).fetchone()
            if found is None:
                raise ApiError(
                    422,
                    "invalid_request",
                    f"unknown metric {metric!r}",
                    [{"field": "metric", "message": "not a metric in the catalog"}],
                )
            _check_group_by(metric, names, json.loads(found[1] or "[]"))
            days = daily_usage(conn, tenant, metric, first, last, names)
        return {
            "tenant_id": tenant,
            "metric": metric,
            "aggregation": found[0],
            "from": first,
            "to": last,
            **({"group_by": names} if names else {}),
            "days": [
                {
                    "date": d.day,
                    "quantity": str(d.quantity),
                    "event_count": d.event_count,
                    **({"dimensions": d.dimensions} if names else {}),
                }
                for d in days
            ],
        }

    return await run_in_threadpool(read)


def _check_group_by(metric: str, names: list[str], dimensions: list[str]) -> None:
    """group_by names some of the metric's dimensions, each once."""
    for name in names:
        problem = None
        if name not in dimensions:
            known = ", ".join(dimensions) or "none"
            problem = f"{name!r} is not a dimension of {metric!r} (its dimensions: {known})"
        elif names.count(name) > 1:
            problem = f"{name!r} is named twice"
        if problem:
            raise ApiError(
                422,
                "invalid_request",
                f"group_by: {problem}",
                [{"field": "group_by", "message": problem}],
            )


@router.get(
    "/v1/invoices/upcoming",
    summary="This month's invoice as it stands now, priced from every event received so far",
)
async def get_upcoming_invoice(
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
    tenant_id: RequiredTenant = None,
) -> dict[str, Any]:
    from ingest.upcoming import upcoming_invoices
    from orchestration.dbt_vars import current_month

    tenant = tenant_of(principal, tenant_id, required=True)
    as_of = datetime.now(UTC)
    month = current_month(as_of)

    def read() -> list[dict[str, Any]]:
        with request.app.state.pool.connection() as conn:
            require_cataloged(conn, principal, tenant)
            return upcoming_invoices(conn, tenant, month)

    invoices = await run_in_threadpool(read)
    if not invoices:
        raise ApiError(
            404,
            "not_found",
            f"tenant {tenant!r} has no invoice this month: no subscription bills it in "
            f"{month:%Y-%m}",
        )
    return {"tenant_id": tenant, "as_of": as_of, "invoices": invoices}


@router.get("/v1/invoices", summary="Invoices with their lines")
async def get_invoices(
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
    month: Annotated[
        str | None, Query(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")
    ] = None,
    tenant_id: Annotated[str | None, Query(description="Admin key only", examples=["acme"])] = None,
) -> dict[str, Any]:
    tenant = tenant_of(principal, tenant_id, required=False)
    first = _day(f"{month}-01", "month") if month else None

    def read() -> dict[str, Any]:
        with request.app.state.pool.connection() as conn:
            require_cataloged(conn, principal, tenant)
            return {"invoices": invoices_with_lines(conn, tenant, first) or []}

    return await run_in_threadpool(read)


# What GET /v1/invoices answers of an invoice and of each of its lines (the upcoming
# invoice's view, ingest.upcoming, has both side by side)
INVOICE_COLUMNS = (
    "invoice_id", "tenant_id", "currency", "period_start", "period_end", "status",
    "subtotal_minor", "tax_minor", "total_minor", "credits_minor", "amount_due_minor",
    "provider_invoice_id", "finalized_at",
)  # fmt: skip
LINE_COLUMNS = (
    "line_id", "line_type", "metric", "plan", "quantity", "billable_quantity", "amount_minor",
    "description", "service_start", "service_end", "discount_id", "grant_id",
)  # fmt: skip


def invoice_line(values: Sequence[Any]) -> dict[str, Any]:
    """A line as the API answers it, from the values of LINE_COLUMNS (quantities as text:
    exact decimals)."""
    line = dict(zip(LINE_COLUMNS, values, strict=True))
    for name in ("quantity", "billable_quantity"):
        line[name] = None if line[name] is None else str(line[name])
    return line


def invoices_with_lines(
    conn: Any, tenant: str | None, month: date | None
) -> list[dict[str, Any]] | None:
    """Invoices from the marts, lines nested, or None when they are not built (before the
    first monthly run)."""
    if not relations_exist(conn, "marts.fct_invoices"):
        return None
    params = {"tenant": tenant, "month": month}
    where = """(%(tenant)s::text is null or tenant_id = %(tenant)s::text)
               and (%(month)s::date is null or period_start = %(month)s::date::timestamptz)"""
    cur = conn.execute(
        f"""select {", ".join(INVOICE_COLUMNS)} from marts.fct_invoices where {where}
            order by period_start, tenant_id, currency""",
        params,
    )
    invoices = {row[0]: dict(zip(INVOICE_COLUMNS, row, strict=True)) | {"lines": []} for row in cur}
    cur = conn.execute(
        f"""select invoice_id, {", ".join(LINE_COLUMNS)} from marts.fct_invoice_lines
            where {where} order by invoice_id, line_type, line_id""",
        params,
    )
    for invoice_id, *values in cur:
        if invoice_id in invoices:
            invoices[invoice_id]["lines"].append(invoice_line(values))
    return list(invoices.values())
