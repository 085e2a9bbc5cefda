"""`billing demo`: the demo catalog, a month of generated usage, the pipeline, the invoices."""

from __future__ import annotations

import random
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import uvicorn
from pydantic import SecretStr
from rich.console import Console
from rich.progress import Progress

from billing.reports import list_invoices, render_invoice
from ingest.app import create_app
from ingest.client import BillingClient
from ingest.writer import Event
from orchestration.dbt_vars import month_window
from orchestration.pipeline import run_daily, run_monthly
from warehouse.catalog import apply_catalog, load_catalog_file
from warehouse.db import connect
from warehouse.migrate import apply_migrations
from warehouse.settings import get_settings

DEMO_CATALOG = Path(__file__).resolve().parent.parent / "examples" / "demo_catalog.yaml"
DEMO_MONTH = date(2026, 10, 1)

# events per day by tenant and metric: a skewed mix, from a busy tenant to a quiet one
DAILY_VOLUME: dict[str, dict[str, int]] = {
    "acme": {"api_calls": 400, "active_users": 300, "storage_gb": 4, "seats": 2},
    "globex": {"api_calls": 150, "builds": 12},
    "initech": {"api_calls": 250, "builds": 30},
    "umbrella": {"api_calls": 300},
    "cyberdyne": {"tokens": 200},
}
# tenants added to the demo later draw from a generator of their own, so that the usage of
# the others stays what it was for a seed
LATER_TENANTS = ("cyberdyne",)
# the tokens of a request: which model, which direction (and an unlisted model now and then)
TOKEN_MODELS = ("small", "small", "large", "tiny")
TOKEN_DIRECTIONS = ("input", "input", "output")


def generate_usage(month: date, seed: int) -> Iterator[Event]:
    """A month of realistic usage for the demo tenants, with retried (duplicate) events."""
    first_rng = random.Random(seed)
    later_rng = random.Random(f"{seed}:later")
    window = month_window(month)
    day = window.start
    while day < window.end:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for tenant, metrics in DAILY_VOLUME.items():
            rng = later_rng if tenant in LATER_TENANTS else first_rng
            for metric, volume in metrics.items():
                for i in range(max(1, int(volume * rng.uniform(0.6, 1.4)))):
                    event = Event(
                        tenant_id=tenant,
                        metric=metric,
                        amount=_amount(rng, metric, day),
                        timestamp=start + timedelta(seconds=rng.randrange(86_400)),
                        idempotency_key=f"demo-{tenant}-{metric}-{day.isoformat()}-{i}",
                        metadata=_metadata(rng, metric),
                    )
                    yield event
                    if rng.random() < 0.02:  # a client retry: same key, same payload
                        yield event
        day += timedelta(days=1)


def _metadata(rng: random.Random, metric: str) -> dict[str, str] | None:
    if metric == "active_users":
        return {"user_id": f"u{rng.randrange(120)}"}
    if metric == "tokens":
        return {"model": rng.choice(TOKEN_MODELS), "direction": rng.choice(TOKEN_DIRECTIONS)}
    return None


def _amount(rng: random.Random, metric: str, day: date) -> Decimal:
    if metric == "tokens":
        return Decimal(rng.randrange(200, 8000))
    if metric == "api_calls":
        return Decimal(rng.choice((10, 25, 50, 100, 250)))
    if metric == "storage_gb":
        return Decimal(90 + day.day * 2 + rng.randrange(10)) + Decimal("0.5")
    if metric == "seats":
        return Decimal(8 + day.day // 3)
    return Decimal(1)


@contextmanager
def local_api() -> Iterator[tuple[str, str]]:
    """The HTTP API on a free loopback port in this process, with a one-off admin key."""
    configured = get_settings().admin_key
    admin_key = configured.get_secret_value() if configured else secrets.token_urlsafe(24)
    settings = get_settings().model_copy(update={"admin_key": SecretStr(admin_key)})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the demo API did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", admin_key
    finally:
        server.should_exit = True
        thread.join(30)


def run_demo(console: Console, seed: int = 7) -> None:
    month = DEMO_MONTH
    window = month_window(month)
    with connect() as conn:
        apply_migrations(conn)
        result = apply_catalog(conn, load_catalog_file(DEMO_CATALOG), str(DEMO_CATALOG))
    console.print(result.summary())

    events = list(generate_usage(month, seed))
    with local_api() as (url, admin_key), Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"sending {month:%Y-%m} usage to {url}", total=len(events))
        client = BillingClient(url, admin_key, batch_size=5_000, flush_interval=0.2)
        for event in events:
            client.track(
                event.tenant_id,
                event.metric,
                event.amount,
                timestamp=event.timestamp,
                idempotency_key=event.idempotency_key,
                metadata=event.metadata,
            )
        while not client.flush(timeout=0.2):
            progress.update(task, completed=client.sent)
        client.close()
    if client.failed:
        raise RuntimeError(f"the API refused {client.failed} demo events")
    console.print(
        f"usage: {client.sent:,} events sent through POST /v1/events "
        f"(retries included) for {month:%Y-%m}"
    )

    with console.status("building daily usage (dbt)"):
        run_daily(window.start, window.end - timedelta(days=1), quiet=True)
    with console.status("computing invoices (dbt)"):
        run_monthly(month, quiet=True)

    for invoice in list_invoices(month=month):
        console.print(render_invoice(invoice.invoice_id))
