"""Usage alerts (ingest.alerts): POST /v1/alerts, GET /v1/alerts, POST
/v1/alerts/{alert_id}/disable. A tenant key manages its own tenant's alerts; the admin key
names the tenant. An alert is never edited: the same id again with the same terms is the
same alert, with other terms a 409."""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from ingest.alerts import fired_this_month
from ingest.auth import Principal
from ingest.bodies import json_body, read_model
from ingest.deps import authenticate
from ingest.errors import ApiError, invalid_field
from ingest.routes.reads import require_cataloged, tenant_of
from ingest.schemas import amount_schema, parse_amount
from orchestration.dbt_vars import current_month
from warehouse.catalog import ID_PATTERN, KEY_PATTERN, check_amount

router = APIRouter(tags=["alerts"])

# a quantity threshold's bound, as an amount's: what the marts' numbers hold with room
MAX_QUANTITY = Decimal(10) ** 15


class AlertIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: str | None = Field(
        default=None, pattern=ID_PATTERN, description="Default: the key's tenant."
    )
    metric: str = Field(pattern=KEY_PATTERN, examples=["api_calls"])
    kind: Literal["quantity", "amount"] = Field(
        description="`quantity`: what the month's usage lines of the metric bill; `amount`: "
        "what they cost before discounts and tax, in the tenant's currency."
    )
    threshold: Annotated[Decimal | str, amount_schema(positive=True)] = Field(
        description="Fired once a month when the month reaches it.", examples=["10000"]
    )
    id: str | None = Field(default=None, pattern=ID_PATTERN, description="Default: generated.")


def _alert_json(row: tuple[Any, ...]) -> dict[str, Any]:
    alert_id, tenant_id, metric, kind, threshold, created_at, disabled_at = row
    return {
        "alert_id": alert_id,
        "tenant_id": tenant_id,
        "metric": metric,
        "kind": kind,
        "threshold": format(threshold.normalize(), "f"),
        "created_at": created_at,
        "disabled_at": disabled_at,
    }


ALERT_COLUMNS = "alert_id, tenant_id, metric, kind, threshold, created_at, disabled_at"


@router.post("/v1/alerts", status_code=201, openapi_extra=json_body(AlertIn))
async def create_alert(
    request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> dict[str, Any]:
    body = await read_model(request, AlertIn)
    tenant = tenant_of(principal, body.tenant_id, required=True)
    try:
        threshold = parse_amount(body.threshold)
    except ValueError as exc:
        raise invalid_field("threshold", str(exc)) from None
    if threshold <= 0:
        raise invalid_field("threshold", "must be above 0")
    alert_id = body.id or f"alert_{secrets.token_hex(8)}"

    def work() -> dict[str, Any]:
        with request.app.state.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "select currency from app.tenants where tenant_id = %s", (tenant,)
            ).fetchone()
            if row is None:
                raise invalid_field("tenant_id", f"unknown tenant {tenant!r}")
            if body.kind == "amount":
                for problem in check_amount("threshold", threshold, row[0]):
                    raise invalid_field(problem.path, problem.message)
            elif threshold >= MAX_QUANTITY:
                raise invalid_field("threshold", f"{threshold} is not below {MAX_QUANTITY:,}")
            known = conn.execute(
                "select 1 from app.metrics where metric_key = %s", (body.metric,)
            ).fetchone()
            if known is None:
                raise invalid_field("metric", f"unknown metric {body.metric!r}")
            inserted = conn.execute(
                f"""insert into app.usage_alerts (alert_id, tenant_id, metric, kind, threshold)
                    values (%s, %s, %s, %s, %s)
                    on conflict (alert_id) do nothing returning {ALERT_COLUMNS}""",
                (alert_id, tenant, body.metric, body.kind, threshold),
            ).fetchone()
            if inserted is not None:
                return _alert_json(inserted)
            existing = conn.execute(
                f"select {ALERT_COLUMNS} from app.usage_alerts where alert_id = %s", (alert_id,)
            ).fetchone()
            assert existing is not None
            if existing[1:5] != (tenant, body.metric, body.kind, threshold):
                raise ApiError(
                    409,
                    "conflict",
                    f"alert {alert_id!r} exists with other terms",
                    [{"field": "id", "message": "an alert with other terms has this id"}],
                )
            return _alert_json(existing)

    created = await run_in_threadpool(work)
    request.app.state.alerts.changed()
    return created


@router.get("/v1/alerts", summary="Usage alerts and whether each fired this month")
async def get_alerts(
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
    tenant_id: Annotated[str | None, Query(description="Admin key only", examples=["acme"])] = None,
) -> dict[str, Any]:
    tenant = tenant_of(principal, tenant_id, required=False)
    month = current_month()

    def read() -> dict[str, Any]:
        with request.app.state.pool.connection() as conn:
            require_cataloged(conn, principal, tenant)
            rows = conn.execute(
                f"""select {ALERT_COLUMNS} from app.usage_alerts
                    where %(tenant)s::text is null or tenant_id = %(tenant)s::text
                    order by tenant_id, alert_id""",
                {"tenant": tenant},
            ).fetchall()
            fired = fired_this_month(conn, [row[0] for row in rows], month)
        alerts = []
        for row in rows:
            alert = _alert_json(row)
            found = fired.get(row[0])
            alert["fired"] = (
                None
                if found is None
                else {
                    "period_start": month,
                    "fired_at": found[0],
                    "value": format(found[1].normalize(), "f"),
                    "source": found[2],
                }
            )
            alerts.append(alert)
        return {"period_start": month, "alerts": alerts}

    return await run_in_threadpool(read)


@router.post("/v1/alerts/{alert_id}/disable")
async def disable_alert(
    alert_id: Annotated[
        str, Path(pattern=ID_PATTERN, description="The alert's id", examples=["alert_calls"])
    ],
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        with request.app.state.pool.connection() as conn:
            row = conn.execute(
                """update app.usage_alerts set disabled_at = coalesce(disabled_at, now())
                   where alert_id = %s and (%s::text is null or tenant_id = %s::text)
                   returning """
                + ALERT_COLUMNS,
                (alert_id, principal.tenant_id, principal.tenant_id),
            ).fetchone()
        if row is None:
            raise ApiError(404, "not_found", f"no alert {alert_id!r}")
        return _alert_json(row)

    return await run_in_threadpool(work)
