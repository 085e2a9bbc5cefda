"""The benchmarks' event generator, in Python: tenants with skewed volumes (a power law),
several metrics, client retries (the same key and payload again) and late events (sent
after the rest, for days already past). Integer amounts, so that a peer that only knows
integers can record the same events."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

METRICS = ("api_calls", "api_calls", "api_calls", "builds", "emails")


@dataclass(frozen=True)
class GeneratedEvent:
    tenant_id: str
    metric: str
    amount: int
    timestamp: datetime
    idempotency_key: str

    def as_json(self) -> dict[str, object]:
        return {
            "tenant_id": self.tenant_id,
            "metric": self.metric,
            "amount": self.amount,
            "timestamp": self.timestamp.isoformat(),
            "idempotency_key": self.idempotency_key,
        }


def generate_events(
    n: int,
    tenants: int,
    month: datetime = datetime(2026, 10, 1, tzinfo=UTC),
    days: int = 31,
    retry_share: float = 0.01,
    late_share: float = 0.01,
    seed: int = 42,
) -> list[GeneratedEvent]:
    """``n`` distinct events plus retries; late events are moved to the end of the list."""
    rng = random.Random(seed)
    on_time: list[GeneratedEvent] = []
    late: list[GeneratedEvent] = []
    for i in range(n):
        event = GeneratedEvent(
            tenant_id=f"t{min(int(rng.paretovariate(1.1)) - 1, tenants - 1)}",
            metric=rng.choice(METRICS),
            amount=1 if rng.random() < 0.3 else rng.randrange(1, 500),
            timestamp=month + timedelta(seconds=rng.randrange(days * 86_400)),
            idempotency_key=f"ev-{i}",
        )
        (late if rng.random() < late_share else on_time).append(event)
        if rng.random() < retry_share:
            (late if rng.random() < 0.5 else on_time).append(event)
    on_time.sort(key=lambda e: e.timestamp)
    return on_time + late
