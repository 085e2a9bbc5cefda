"""POST /v1/webhooks/stripe: signed by Stripe, stored once, statuses applied."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ingest.bodies import MAX_WEBHOOK_BODY, read_body
from ingest.errors import ApiError
from sync.stripe_webhooks import WebhookRejected, apply_event, verify

router = APIRouter(tags=["webhooks"])


@router.post(
    "/v1/webhooks/stripe",
    summary="Stripe webhook (Stripe-Signature verified, each event id applied once)",
    openapi_extra={
        "parameters": [
            {
                "name": "Stripe-Signature",
                "in": "header",
                "required": True,
                "description": "Stripe's signature of the body (t=...,v1=...); "
                "a missing or wrong one is a 400 and stores nothing.",
                "schema": {"type": "string"},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object", "description": "A Stripe event"}}
            },
        },
    },
)
async def stripe_webhook(request: Request) -> dict[str, Any]:
    secret = request.app.state.settings.stripe_webhook_secret
    if secret is None:
        raise ApiError(503, "webhooks_not_configured", "BILLING_STRIPE_WEBHOOK_SECRET is not set")
    payload = await read_body(request, MAX_WEBHOOK_BODY)
    try:
        event = verify(payload, request.headers.get("stripe-signature"), secret.get_secret_value())
    except WebhookRejected as exc:
        raise ApiError(400, exc.code, str(exc)) from None

    def store() -> dict[str, Any]:
        with request.app.state.pool.connection() as conn:
            return apply_event(conn, event).as_json()

    return await run_in_threadpool(store)
