"""The FastAPI application factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from ingest.alerts import AlertWatcher
from ingest.auth import KeyResolver
from ingest.bodies import body_schemas
from ingest.errors import error_responses, install_error_handlers
from ingest.metrics import MetricCatalog
from ingest.quotas import QuotaLane
from ingest.routes import (
    alerts,
    credits,
    events,
    health,
    quotas,
    reads,
    subscriptions,
    webhook_endpoints,
    webhooks,
)
from warehouse.db import database_url
from warehouse.migrate import pending_migrations
from warehouse.settings import Settings, get_settings


class BillingAPI(FastAPI):
    """The API's FastAPI application: quota checks, its hot path, are answered before the
    middleware and routing (``ingest.routes.quotas.serve_check``); everything else goes
    through them."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if quotas.is_check(scope):
            await quotas.serve_check(self.state, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> BillingAPI:
    """The API; the warehouse is opened when the app starts, not when it is created."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        current = settings or get_settings()
        # autocommit: a request's one statement is its own transaction (one round trip);
        # writes of several statements open `conn.transaction()` themselves
        pool = ConnectionPool(
            database_url(current, api=True),
            min_size=1,
            max_size=8,
            open=True,
            name="billing-api",
            kwargs={"autocommit": True},
        )
        with pool.connection() as conn:
            # the API's role applies no migration: `billing db up` (and `billing serve`) does
            missing = pending_migrations(conn)
        if missing:
            raise RuntimeError(
                f"the warehouse lacks migrations {', '.join(missing)}: run `billing db up`"
            )
        # the quota checks' hot path: async, so a check never waits for a worker thread;
        # one statement at a time (ingest.quotas.QuotaLane); commits do not wait for the
        # disk (DECISIONLOG.md, "Quotas"): an fsync stall would otherwise land in every
        # check's latency
        async_pool = AsyncConnectionPool(
            database_url(current, api=True),
            min_size=1,
            max_size=1,
            open=False,
            name="billing-api-async",
            kwargs={"autocommit": True, "options": "-c synchronous_commit=off"},
        )
        await async_pool.open()
        app.state.quota_lane = QuotaLane(async_pool)
        admin = current.admin_key.get_secret_value() if current.admin_key else None
        app.state.settings = current
        app.state.pool = pool
        app.state.keys = KeyResolver(pool, admin)
        app.state.metrics = MetricCatalog(pool)
        app.state.alerts = AlertWatcher(pool)
        # the quota.exceeded events this worker recorded (ingest.quotas)
        app.state.quota_exceeded = set()
        # everything loaded so far lives as long as the worker: keep it out of the
        # garbage collector's full passes, which otherwise pause every request
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            app.state.alerts.stop()
            await async_pool.close()
            pool.close()

    app = BillingAPI(
        title="Billing warehouse API",
        version="0.1.0",
        description="Usage events in, invoices out. Authorization: Bearer KEY.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    errors = error_responses(400, 401, 403, 404, 405, 413, 422)
    app.include_router(events.router, responses=errors)
    # live usage: 503 on a warehouse without its views (`billing db up` builds them)
    app.include_router(quotas.router, responses=error_responses(503) | errors)
    app.include_router(subscriptions.router, responses=error_responses(409) | errors)
    app.include_router(reads.router, responses=error_responses(503) | errors)
    app.include_router(credits.router, responses=error_responses(409, 503) | errors)
    app.include_router(alerts.router, responses=error_responses(409) | errors)
    app.include_router(webhooks.router, responses=error_responses(503) | errors)
    app.include_router(webhook_endpoints.router, responses=errors)
    app.include_router(health.router, responses=error_responses(405, 503))

    def openapi() -> dict[str, Any]:
        # the bodies read by `read_model` are documented by reference to these components
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(body_schemas())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
