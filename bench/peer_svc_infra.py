"""The peer's side of `bench.peer_bench`, run in its own process with svc-infra on the path.

Reads events (JSON lines) from a file, records them with svc-infra's
``AsyncBillingService.record_usage`` (a retried key breaks the peer's unique constraint:
that event is skipped, as a client of the peer would have to), aggregates every tenant,
metric and day with ``aggregate_daily`` and invoices every tenant with
``generate_monthly_invoice``. Prints one JSON object: timings and the daily totals.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


async def main(url: str, events_path: str) -> dict[str, Any]:
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
    from svc_infra.billing import AsyncBillingService
    from svc_infra.billing.models import Invoice, InvoiceLine, UsageAggregate, UsageEvent

    events = [json.loads(line) for line in Path(events_path).read_text().splitlines()]
    engine = create_async_engine(url, pool_size=4)
    async with engine.begin() as conn:
        for model in (UsageEvent, UsageAggregate, Invoice, InvoiceLine):
            await conn.run_sync(model.__table__.create, checkfirst=True)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    started = time.perf_counter()
    duplicates = 0
    async with sessions() as session:
        for i, event in enumerate(events):
            service = AsyncBillingService(session, event["tenant_id"])
            try:
                async with session.begin_nested():
                    await service.record_usage(
                        metric=event["metric"],
                        amount=int(event["amount"]),
                        at=datetime.fromisoformat(event["timestamp"]),
                        idempotency_key=event["idempotency_key"],
                        metadata=None,
                    )
            except IntegrityError:
                duplicates += 1
            if i % 1000 == 999:
                await session.commit()
        await session.commit()
    record_seconds = time.perf_counter() - started

    keys = sorted({(e["tenant_id"], e["metric"]) for e in events})
    month = datetime(2026, 10, 1, tzinfo=UTC)
    started = time.perf_counter()
    totals: dict[str, int] = {}
    async with sessions() as session:
        for tenant, metric in keys:
            service = AsyncBillingService(session, tenant)
            for day in range(31):
                day_start = month + timedelta(days=day)
                total = await service.aggregate_daily(metric=metric, day_start=day_start)
                if total:
                    totals[f"{tenant}|{metric}|{day_start.date()}"] = total
            await session.commit()
        for tenant in sorted({t for t, _ in keys}):
            await AsyncBillingService(session, tenant).generate_monthly_invoice(
                period_start=month, period_end=datetime(2026, 11, 1, tzinfo=UTC), currency="usd"
            )
        await session.commit()
    month_seconds = time.perf_counter() - started
    await engine.dispose()
    return {
        "events": len(events),
        "duplicates_skipped": duplicates,
        "record_seconds": record_seconds,
        "month_seconds": month_seconds,
        "daily_totals": totals,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
