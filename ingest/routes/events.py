"""POST /v1/events: validate a batch, COPY it into raw.events, answer after the commit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from ingest.auth import Principal
from ingest.bodies import json_body, loads, read_body
from ingest.deps import authenticate
from ingest.errors import ApiError
from ingest.schemas import (
    MAX_BODY_BYTES,
    MAX_EVENTS,
    ErrorBody,
    EventsRequest,
    IngestResponse,
    validate_events,
)
from ingest.writer import copy_rows

router = APIRouter(tags=["events"])


def parse_body(body: bytes, content_type: str) -> list[Any]:
    """The list of raw events in a JSON or NDJSON body."""
    if "ndjson" in content_type or "jsonlines" in content_type:
        events: list[Any] = []
        for number, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            if len(events) >= MAX_EVENTS:
                raise _too_many()
            try:
                events.append(loads(line))
            except (ValueError, UnicodeDecodeError) as exc:
                raise ApiError(
                    400,
                    "malformed_json",
                    f"line {number} is not valid JSON: {exc}",
                    [{"line": number, "message": str(exc)}],
                ) from None
        return events
    try:
        document = loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise ApiError(
            422,
            "invalid_request",
            'the body must be {"events": [EVENT, ...]}',
            [{"field": "events", "message": "must be a list of events"}],
        )
    extra = sorted(str(k) for k in document if k != "events")
    if extra:
        raise ApiError(
            422,
            "invalid_request",
            f"unknown field {extra[0]!r}",
            [{"field": k, "message": "unknown field"} for k in extra],
        )
    if len(document["events"]) > MAX_EVENTS:
        raise _too_many()
    found: list[Any] = document["events"]
    return found


def _too_many() -> ApiError:
    return ApiError(413, "too_many_events", f"at most {MAX_EVENTS} events a request")


def ingest_events(
    request: Request, body: bytes, principal: Principal, partial: bool
) -> dict[str, Any]:
    events = parse_body(body, request.headers.get("content-type", ""))
    foreign: list[int] = []
    if not principal.is_admin:  # the admin acts for every tenant
        foreign = [
            i
            for i, e in enumerate(events)
            if isinstance(e, dict)
            and "tenant_id" in e
            and not principal.may_act_for(e["tenant_id"])
        ]
    if foreign:
        raise ApiError(
            403,
            "forbidden",
            f"this key acts only for tenant {principal.tenant_id!r}; "
            f"{len(foreign)} events name another tenant",
            [
                {"index": i, "field": "tenant_id", "message": "another tenant"}
                for i in foreign[:100]
            ],
        )
    wanted = {
        e["metric"] for e in events if isinstance(e, dict) and isinstance(e.get("metric"), str)
    }
    metrics = request.app.state.metrics.current(wanted)
    rows, errors, _ = validate_events(events, metrics, datetime.now(UTC))
    if errors and not partial:
        bad = len({e.index for e in errors})
        raise ApiError(
            422,
            "invalid_events",
            f"{bad} of {len(events)} events are invalid; nothing was stored",
            [e.as_dict() for e in errors],
        )
    if rows:
        with request.app.state.pool.connection() as conn:
            # one COPY, its own transaction (the pool's connections autocommit): the 200
            # goes out only after it commits, and BEGIN and COMMIT cost no round trips
            copy_rows(conn, rows)
        # their tenants' usage alerts are looked at off this request (ingest.alerts)
        request.app.state.alerts.stored({row[0] for row in rows})  # tenant_id: COLUMNS
    return {"accepted": len(rows), "rejected": [e.as_dict() for e in errors]}


@router.post(
    "/v1/events",
    response_model=IngestResponse,
    responses={
        400: {"model": ErrorBody, "description": "Malformed JSON"},
        401: {"model": ErrorBody, "description": "No or unknown key"},
        403: {"model": ErrorBody, "description": "Another tenant's events"},
        413: {"model": ErrorBody, "description": "Over 10,000 events or 5 MiB"},
        422: {"model": ErrorBody, "description": "Invalid events; nothing stored"},
    },
    openapi_extra=json_body(
        EventsRequest,
        also={
            "application/x-ndjson": {
                "schema": {
                    "$ref": "#/components/schemas/EventIn",
                    "description": "One EVENT a line (each line is an EventIn object)",
                }
            }
        },
    ),
)
async def post_events(
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
    partial: Annotated[
        bool, Query(description="Store the valid events and list the rest.")
    ] = False,
) -> dict[str, Any]:
    """Store usage events. All-or-nothing unless `partial=true`."""
    body = await read_body(request, MAX_BODY_BYTES)
    return await run_in_threadpool(ingest_events, request, body, principal, partial)
