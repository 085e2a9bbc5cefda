"""Usage alerts: a threshold per tenant and metric, in quantity or in amount, fired once per
calendar month when the month's usage reaches it.

What a month comes to is read from the upcoming invoice (ingest.upcoming: the monthly run's
own models, events received a moment ago included): an alert's quantity is the quantity
the month's usage lines of its metric bill, its amount what they cost before discounts and
tax. So an alert and the invoice never disagree, whatever the metric's aggregation or the
plan's pricing.

Crossings are looked for after ingest (in the API, off the request: ``AlertWatcher``) and
after every daily and monthly run (``evaluate_all``, orchestration.pipeline); whichever
sees one first records it, once per alert and month (app.usage_alert_firings' key), with
its `usage.threshold_crossed` event in the same transaction (warehouse.outbox).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import psycopg
from psycopg_pool import ConnectionPool

from ingest.upcoming import PreviewMissing, upcoming_invoices
from orchestration.dbt_vars import current_month
from warehouse.currencies import MINOR_UNITS
from warehouse.outbox import record_event

log = logging.getLogger(__name__)

AlertKind = Literal["quantity", "amount"]
Source = Literal["ingest", "run"]


@dataclass(frozen=True)
class Crossing:
    alert_id: str
    tenant_id: str
    metric: str
    kind: str
    threshold: Decimal
    value: Decimal
    period_start: date


def month_usage(
    conn: psycopg.Connection[Any], tenant: str, month: date
) -> dict[str, tuple[Decimal, Decimal]]:
    """Per metric, the quantity and the amount (in the currency's major units) of the
    month's usage lines on the tenant's upcoming invoice."""
    found: dict[str, tuple[Decimal, Decimal]] = {}
    for invoice in upcoming_invoices(conn, tenant, month):
        scale = Decimal(10) ** -MINOR_UNITS[invoice["currency"]]
        for line in invoice["lines"]:
            if line["line_type"] != "usage" or line["metric"] is None:
                continue
            quantity, amount = found.get(line["metric"], (Decimal(0), Decimal(0)))
            found[line["metric"]] = (
                quantity + Decimal(line["quantity"] or 0),
                amount + line["amount_minor"] * scale,
            )
    return found


def evaluate(
    conn: psycopg.Connection[Any], tenant: str, source: Source, month: date | None = None
) -> list[Crossing]:
    """Record the crossings of the tenant's active alerts not recorded yet this month;
    return those recorded now."""
    month = month or current_month()
    alerts = conn.execute(
        """select alert_id, metric, kind, threshold from app.usage_alerts
           where tenant_id = %s and disabled_at is null
             and not exists (select 1 from app.usage_alert_firings f
                             where f.alert_id = usage_alerts.alert_id
                               and f.period_start = %s::date::timestamptz)
           order by alert_id""",
        (tenant, month),
    ).fetchall()
    if not alerts:
        return []
    usage = month_usage(conn, tenant, month)
    crossed = []
    for alert_id, metric, kind, threshold in alerts:
        quantity, amount = usage.get(metric, (Decimal(0), Decimal(0)))
        value = quantity if kind == "quantity" else amount
        if value >= threshold:
            crossed.append(Crossing(alert_id, tenant, metric, kind, threshold, value, month))
    recorded = []
    for crossing in crossed:
        with conn.transaction():
            row = conn.execute(
                """insert into app.usage_alert_firings (alert_id, period_start, value, source)
                   values (%s, %s::date::timestamptz, %s, %s)
                   on conflict do nothing returning fired_at""",
                (crossing.alert_id, month, crossing.value, source),
            ).fetchone()
            if row is None:  # another process saw it first
                continue
            record_event(
                conn,
                "usage.threshold_crossed",
                tenant,
                {
                    "alert_id": crossing.alert_id,
                    "tenant_id": tenant,
                    "metric": crossing.metric,
                    "kind": crossing.kind,
                    "threshold": str(crossing.threshold),
                    "value": str(crossing.value),
                    "period_start": str(month),
                    "fired_at": row[0].isoformat(),
                    "source": source,
                },
                key=f"{crossing.alert_id}|{month}",
            )
        recorded.append(crossing)
    return recorded


def alerted_tenants(conn: psycopg.Connection[Any]) -> list[str]:
    """The tenants with an active alert."""
    return [
        row[0]
        for row in conn.execute(
            "select distinct tenant_id from app.usage_alerts where disabled_at is null "
            "order by tenant_id"
        )
    ]


def evaluate_all(conn: psycopg.Connection[Any], source: Source = "run") -> list[Crossing]:
    """evaluate for every tenant with an active alert (after a run)."""
    crossings = []
    for tenant in alerted_tenants(conn):
        crossings += evaluate(conn, tenant, source)
    return crossings


class AlertWatcher:
    """After ingest, in the API process: the tenants of stored events that have active
    alerts are evaluated by one thread, off the requests. A tenant sent events again while
    it waits is evaluated once; the set of tenants with alerts is read again every
    ``refresh`` seconds."""

    def __init__(self, pool: ConnectionPool, refresh: float = 2.0) -> None:
        self._pool = pool
        self._refresh = refresh
        self._alerted: frozenset[str] = frozenset()
        self._read_at = float("-inf")
        self._waiting: set[str] = set()
        self._evaluating = False
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="alert-watcher", daemon=True)
        self._thread.start()

    def stored(self, tenants: Iterable[str]) -> None:
        """Events of ``tenants`` were just stored."""
        alerted = self._alerted_tenants()
        wanted = {tenant for tenant in tenants if tenant in alerted}
        if wanted:
            with self._wake:
                self._waiting |= wanted
                self._wake.notify_all()

    def changed(self) -> None:
        """An alert was created: read the tenants with alerts again at the next ingest."""
        self._read_at = float("-inf")

    def idle(self, timeout: float = 30.0) -> bool:
        """Wait until no tenant waits for an evaluation and none is under way."""
        with self._wake:
            return self._wake.wait_for(
                lambda: not self._waiting and not self._evaluating, timeout=timeout
            )

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify_all()
        self._thread.join(timeout=10)

    def _alerted_tenants(self) -> frozenset[str]:
        if time.monotonic() - self._read_at > self._refresh:
            self._read_at = time.monotonic()
            try:
                with self._pool.connection() as conn:
                    self._alerted = frozenset(alerted_tenants(conn))
            except psycopg.Error:  # an older warehouse without the table: no alert
                log.exception("reading the tenants with usage alerts")
        return self._alerted

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._stopped:
                    self._wake.wait()
                if self._stopped:
                    return
                tenant = min(self._waiting)
                self._waiting.discard(tenant)
                self._evaluating = True
            try:
                self._evaluate(tenant)
            finally:
                with self._wake:
                    self._evaluating = False
                    self._wake.notify_all()

    def _evaluate(self, tenant: str) -> None:
        try:
            with self._pool.connection() as conn:
                evaluate(conn, tenant, "ingest")
        except PreviewMissing:
            pass  # `billing db up` builds what alerts read; the next run evaluates them
        except Exception:  # the watcher outlives one tenant's failure
            log.exception("evaluating the usage alerts of %s", tenant)


def fired_this_month(
    conn: psycopg.Connection[Any], alert_ids: list[str], month: date
) -> dict[str, tuple[datetime, Decimal, str]]:
    return {
        row[0]: (row[1], row[2], row[3])
        for row in conn.execute(
            """select alert_id, fired_at, value, source from app.usage_alert_firings
               where alert_id = any(%s) and period_start = %s::date::timestamptz""",
            (alert_ids, month),
        )
    }
