"""`billing demo`: the demo catalog, a month of generated usage, the pipeline, the invoices."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from ingest.writer import Event, copy_events
from orchestration.dbt_vars import month_window
from orchestration.pipeline import run_daily, run_monthly
from orchestration.reports import list_invoices, render_invoice
from warehouse.catalog import apply_catalog, load_catalog_file
from warehouse.db import connect
from warehouse.migrate import apply_migrations

DEMO_CATALOG = Path(__file__).resolve().parent.parent / "examples" / "demo_catalog.yaml"
DEMO_MONTH = date(2026, 10, 1)

# events per day by tenant and metric: a skewed mix, from a busy tenant to a quiet one
DAILY_VOLUME: dict[str, dict[str, int]] = {
    "acme": {"api_calls": 400, "active_users": 300, "storage_gb": 4, "seats": 2},
    "globex": {"api_calls": 150, "builds": 12},
    "initech": {"api_calls": 250, "builds": 30},
    "umbrella": {"api_calls": 300},
}


def generate_usage(month: date, seed: int) -> Iterator[Event]:
    """A month of realistic usage for the demo tenants, with retried (duplicate) events."""
    rng = random.Random(seed)
    window = month_window(month)
    day = window.start
    while day < window.end:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for tenant, metrics in DAILY_VOLUME.items():
            for metric, volume in metrics.items():
                for i in range(max(1, int(volume * rng.uniform(0.6, 1.4)))):
                    event = Event(
                        tenant_id=tenant,
                        metric=metric,
                        amount=_amount(rng, metric, day),
                        timestamp=start + timedelta(seconds=rng.randrange(86_400)),
                        idempotency_key=f"demo-{tenant}-{metric}-{day.isoformat()}-{i}",
                        metadata={"user_id": f"u{rng.randrange(120)}"}
                        if metric == "active_users"
                        else None,
                    )
                    yield event
                    if rng.random() < 0.02:  # a client retry: same key, same payload
                        yield event
        day += timedelta(days=1)


def _amount(rng: random.Random, metric: str, day: date) -> Decimal:
    if metric == "api_calls":
        return Decimal(rng.choice((10, 25, 50, 100, 250)))
    if metric == "storage_gb":
        return Decimal(90 + day.day * 2 + rng.randrange(10)) + Decimal("0.5")
    if metric == "seats":
        return Decimal(8 + day.day // 3)
    return Decimal(1)


def run_demo(console: Console, seed: int = 7) -> None:
    month = DEMO_MONTH
    window = month_window(month)
    with connect() as conn:
        apply_migrations(conn)
        result = apply_catalog(conn, load_catalog_file(DEMO_CATALOG), str(DEMO_CATALOG))
    console.print(result.summary())

    events = list(generate_usage(month, seed))
    batch = 5_000
    with Progress(console=console, transient=True) as progress, connect() as conn:
        task = progress.add_task(f"ingesting {month:%Y-%m} usage", total=len(events))
        for offset in range(0, len(events), batch):
            chunk = events[offset : offset + batch]
            copy_events(conn, chunk)
            conn.commit()
            progress.advance(task, len(chunk))
    console.print(f"usage: {len(events):,} events sent (retries included) for {month:%Y-%m}")

    with console.status("building daily usage (dbt)"):
        run_daily(window.start, window.end - timedelta(days=1), quiet=True)
    with console.status("computing invoices (dbt)"):
        run_monthly(month, quiet=True)

    for invoice in list_invoices(month=month):
        console.print(render_invoice(invoice.invoice_id))
