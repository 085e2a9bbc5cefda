"""A Starlette middleware that meters each authenticated request as an `api_calls` event.

Metering only enqueues on the client (no I/O on the response path); the client sends in
the background.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest.client import BillingClient

TenantResolver = Callable[[Scope], str | None]


class UsageMeteringMiddleware:
    """Pure ASGI middleware: after a response starts, one event for the request's tenant.

    ``tenant_of(scope)`` names the tenant of an authenticated request, or None for a request
    that is not metered (anonymous, health checks).
    """

    def __init__(
        self,
        app: ASGIApp,
        client: BillingClient,
        tenant_of: TenantResolver,
        metric: str = "api_calls",
        metadata_of: Callable[[Scope, int], dict[str, Any] | None] | None = None,
    ) -> None:
        self.app = app
        self.client = client
        self.tenant_of = tenant_of
        self.metric = metric
        self.metadata_of = metadata_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            tenant = self.tenant_of(scope)
            if tenant is not None:
                metadata = self.metadata_of(scope, status) if self.metadata_of else None
                self.client.track(tenant, self.metric, 1, metadata=metadata)
