"""Quota check-and-increment against the plan's quota, for the current calendar month (UTC).

The counter of a tenant, metric and month lives in ``app.quota_counters``; one call of the
SQL function ``app.quota_check`` locks it, decides and increments, so concurrent checks
against a hard limit never let more through than the limit. A month's counter starts from
the warehouse's usage of that month (``ingest.usage``), so nothing is lost on a restart or
a new month; afterwards the checks move it. A check with an idempotency key is recorded,
and a retry of it answers as the first time without incrementing.

Checks go to PostgreSQL through a ``QuotaLane``: one statement at a time per API worker,
carrying every check that arrived while the previous one was out. Alone, a check goes at
once; under load they go together, so a round trip's cost (most of a check's CPU in the
API) is shared and the most a worker serves grows with the load instead of queueing.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi.concurrency import run_in_threadpool
from psycopg.errors import DeadlockDetected, UniqueViolation
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from ingest.usage import daily_usage
from warehouse.outbox import record_event

QUOTA_AGGREGATIONS = ("sum", "count")


class QuotaRefused(ValueError):
    """The check cannot be made: the message names the field and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class QuotaDecision:
    allowed: bool
    used: Decimal
    limit: Decimal | None
    policy: str
    period_end: datetime
    replayed: bool

    @property
    def overage(self) -> bool:
        return self.limit is not None and self.used > self.limit

    @property
    def remaining(self) -> Decimal | None:
        return None if self.limit is None else max(self.limit - self.used, Decimal(0))

    def retry_after(self, now: datetime) -> int:
        """Seconds to the end of the period, when the counter starts again."""
        return max(1, math.ceil((self.period_end - now).total_seconds()))

    def as_json(self) -> dict[str, Any]:
        def text(value: Decimal | None) -> str | None:
            return None if value is None else format(value.normalize(), "f")

        return {
            "allowed": self.allowed,
            "used": text(self.used),
            "limit": text(self.limit),
            "remaining": text(self.remaining),
            "policy": self.policy,
            "period_end": self.period_end.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "overage": self.overage,
            "replayed": self.replayed,
        }


Check = tuple[str, str, Decimal, str | None, datetime]  # tenant, metric, amount, key, now

# Each check is app.quota_check's, in the order sent (QuotaLane sorts them by counter). The
# checks go as one JSON text (``_checks_json``): psycopg dumps a list parameter element by
# element in Python, and five of them cost a statement ~80 us of the worker's CPU, a quarter
# of what the statement cost it
_CHECKS = """
select c.* from json_to_recordset(%s::json)
         as u(tenant text, metric text, amount numeric, key text, at timestamptz, n int)
cross join lateral app.quota_check(u.tenant, u.metric, u.amount, u.key, u.at) as c
order by u.n
"""


class QuotaLane:
    """The checks of one API worker, to PostgreSQL one statement at a time: each statement
    carries every check waiting when it goes. A statement that fails (nothing of it is
    committed) fails each of its checks: ``check_quota`` sends them again when another
    statement's key was in the way."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self._waiting: list[tuple[Check, asyncio.Future[tuple[Any, ...]]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def decide(self, check: Check) -> tuple[Any, ...]:
        """``app.quota_check``'s row for ``check``."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((check, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send())
        return await future

    async def _send(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                batch.sort(key=lambda waiting: _counter_order(waiting[0]))
                try:
                    rows = await self._statement([check for check, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), row in zip(batch, rows, strict=True):
                    if not future.done():
                        future.set_result(row)
        finally:
            self._sender = None

    async def _statement(self, checks: list[Check]) -> list[tuple[Any, ...]]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_CHECKS, (_checks_json(checks),))
            rows = await cursor.fetchall()
        if len(rows) != len(checks):  # pragma: no cover - one row per check, always
            raise RuntimeError(f"{len(checks)} quota checks answered by {len(rows)} rows")
        return rows


def _checks_json(checks: list[Check]) -> str:
    """The checks as ``_CHECKS`` reads them: the amount as its decimal text (exact), the
    moment in ISO 8601 with its offset, ``n`` the order of the answers."""
    return json.dumps(
        [
            {"tenant": t, "metric": m, "amount": str(a), "key": k, "at": at.isoformat(), "n": n}
            for n, (t, m, a, k, at) in enumerate(checks)
        ]
    )


def _counter_order(check: Check) -> tuple[str, str, datetime]:
    """Counters in one order (tenant, metric, moment: the month), their checks in arrival
    order: two statements lock the counters they share one after the other, never in a
    cycle."""
    tenant, metric, _, _, now = check
    return tenant, metric, now


def _seed(pool: ConnectionPool, tenant: str, metric: str, start: datetime, end: datetime) -> None:
    """Create the counter of [start, end) from the warehouse's usage (once; a racing twin
    loses)."""
    with pool.connection() as conn:
        usage = daily_usage(conn, tenant, metric, start.date(), (end - timedelta(days=1)).date())
        used = sum((day.quantity for day in usage), Decimal(0))
        conn.execute(
            """insert into app.quota_counters (tenant_id, metric, period_start, used, seeded_with)
               values (%s, %s, %s, %s, %s) on conflict do nothing""",
            (tenant, metric, start, used, used),
        )


async def _exceeded(
    pool: ConnectionPool,
    recorded: set[tuple[str, str, datetime]],
    tenant: str,
    metric: str,
    start: datetime,
    decision: QuotaDecision,
) -> None:
    """Record `quota.exceeded` (warehouse.outbox), once per tenant, metric and month: the
    first check refused by a hard limit or past a soft one. ``recorded`` is what this API
    process recorded already (or found recorded): the hot path asks the database once per
    period, not at every check past the limit."""
    seen = (tenant, metric, start)
    if seen in recorded:
        return

    def record() -> None:
        with pool.connection() as conn, conn.transaction():
            record_event(
                conn,
                "quota.exceeded",
                tenant,
                {"tenant_id": tenant, "metric": metric, "period_start": start.isoformat()}
                | decision.as_json(),
                key=f"{tenant}|{metric}|{start.isoformat()}",
            )

    await run_in_threadpool(record)
    recorded.add(seen)


async def check_quota(
    lane: QuotaLane,
    seed_pool: ConnectionPool,
    exceeded: set[tuple[str, str, datetime]],
    tenant: str,
    metric: str,
    aggregation: str,
    amount: Decimal,
    key: str | None,
    now: datetime | None = None,
) -> QuotaDecision:
    """Check ``amount`` more of ``metric`` for ``tenant`` and count it if allowed.

    The check goes through the worker's ``lane`` (one round trip, shared with the checks
    beside it, no thread hop); a month's first check seeds its counter through
    ``seed_pool`` in a worker thread.
    """
    now = now or datetime.now(UTC)
    if aggregation not in QUOTA_AGGREGATIONS:
        raise QuotaRefused(
            "metric", f"{metric!r} aggregates by {aggregation}; quotas count sum and count metrics"
        )
    for _ in range(3):
        try:
            result = await lane.decide((tenant, metric, amount, key, now))
        except (UniqueViolation, DeadlockDetected):
            # another statement recorded the key (for another metric) just now: this one,
            # and every check it carried, goes again; the key's check is then a replay
            continue
        status, allowed, used, limit, policy, period_start, period_end = result
        if status == "needs_seed":
            await run_in_threadpool(_seed, seed_pool, tenant, metric, period_start, period_end)
            continue
        if status == "no_subscription":
            raise QuotaRefused("tenant_id", f"tenant {tenant!r} has no active subscription")
        decision = QuotaDecision(
            bool(allowed), used, limit, policy, period_end, replayed=status == "replayed"
        )
        if not decision.allowed or decision.overage:
            await _exceeded(seed_pool, exceeded, tenant, metric, period_start, decision)
        return decision
    raise RuntimeError("the quota counter could not be created")  # pragma: no cover
