"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from ingest.auth import KeyResolver
from ingest.errors import install_error_handlers
from ingest.metrics import MetricCatalog
from ingest.routes import events, health, quotas, reads, subscriptions, webhooks
from warehouse.db import database_url
from warehouse.migrate import apply_migrations
from warehouse.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API; the warehouse is opened when the app starts, not when it is created."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        current = settings or get_settings()
        pool = ConnectionPool(
            database_url(current), min_size=1, max_size=8, open=True, name="billing-api"
        )
        with pool.connection() as conn:
            apply_migrations(conn)
        admin = current.admin_key.get_secret_value() if current.admin_key else None
        app.state.settings = current
        app.state.pool = pool
        app.state.keys = KeyResolver(pool, admin)
        app.state.metrics = MetricCatalog(pool)
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(
        title="Billing warehouse API",
        version="0.1.0",
        description="Usage events in, invoices out. Authorization: Bearer KEY.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(events.router)
    app.include_router(quotas.router)
    app.include_router(subscriptions.router)
    app.include_router(reads.router)
    app.include_router(webhooks.router)
    app.include_router(health.router)
    return app
