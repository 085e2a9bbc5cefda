"""Push finalized invoices to Stripe exactly once, with Stripe's own Python SDK.

One invoice is pushed in four steps, each safe to repeat:

1. find the Stripe invoice already made for it (by ``metadata.billing_invoice_id`` among the
   invoices of every customer a push of it used, ``app.stripe_push_attempts``) or create a
   draft, with the idempotency key ``billing-invoice-ID``;
2. add each line that the draft does not hold yet as an invoice item (negative amounts:
   discounts, credits for unused time, prepaid credits), key ``billing-line-ID-LINE``; tax
   is one more item, line id ``tax``; so Stripe's total is our total less the prepaid
   credits (``amount_due_minor``);
3. check the draft's total against ours (a mismatch stays a draft, never collected), then
   finalize it, key ``billing-finalize-ID``;
4. record the Stripe invoice id with the status ``pending`` in ``app.invoice_status_events``.

Idempotency keys make a retried request safe for Stripe's 24 hours; the lookups in steps 1
and 2 make a push that died half-way safe after that too. A step that fails leaves the
invoice for the next push and does not stop the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import psycopg
import stripe
from psycopg.rows import dict_row

from warehouse.db import connect
from warehouse.settings import Settings, get_settings

PUSH_SOURCE = "stripe_push"
PUSH_LOCK = 7_361_001  # pg_advisory_lock id: one push at a time per warehouse

Outcome = Literal["pushed", "skipped", "failed"]


class StripeNotConfigured(RuntimeError):
    """``BILLING_STRIPE_API_KEY`` is not set."""


class PushInProgress(RuntimeError):
    """Another push holds the warehouse's push lock."""


class StepFailed(Exception):
    """One step of one invoice failed; the message says which and why."""


@dataclass(frozen=True)
class LineToPush:
    line_id: str
    amount_minor: int
    description: str
    service_start: datetime | None
    service_end: datetime | None


@dataclass(frozen=True)
class InvoiceToPush:
    invoice_id: str
    tenant_id: str
    currency: str
    period_start: datetime
    period_end: datetime
    amount_due_minor: int  # the total less the prepaid credits: what Stripe's invoice totals
    finalized_at: datetime
    customer_id: str | None
    pushed_as: str | None
    lines: tuple[LineToPush, ...]


@dataclass(frozen=True)
class PushResult:
    invoice_id: str
    tenant_id: str
    outcome: Outcome
    provider_invoice_id: str | None = None
    message: str = ""


@dataclass
class PushReport:
    results: list[PushResult] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for result in self.results if result.outcome == outcome)

    @property
    def failed(self) -> list[PushResult]:
        return [result for result in self.results if result.outcome == "failed"]

    def summary(self) -> str:
        return (
            f"stripe push: {self.count('pushed')} pushed, {self.count('skipped')} skipped "
            f"(already in Stripe), {self.count('failed')} failed"
        )


def stripe_client(settings: Settings | None = None) -> stripe.StripeClient:
    """A Stripe client for the configured key and API base, with network retries."""
    settings = settings or get_settings()
    if settings.stripe_api_key is None:
        raise StripeNotConfigured("BILLING_STRIPE_API_KEY is not set: nothing can be pushed")
    return stripe.StripeClient(
        settings.stripe_api_key.get_secret_value(),
        base_addresses={"api": settings.stripe_api_base},
        max_network_retries=settings.stripe_max_network_retries,
        http_client=stripe.RequestsClient(timeout=settings.stripe_timeout_seconds),
    )


def invoices_to_push(conn: psycopg.Connection, month: date | None = None) -> list[InvoiceToPush]:
    """Finalized invoices (of one month, or all) with their lines and push state."""
    with conn.cursor(row_factory=dict_row) as cur:
        invoices = cur.execute(
            """select i.invoice_id, i.tenant_id, i.currency, i.period_start, i.period_end,
                      i.tax_minor, i.total_minor - i.credits_minor as amount_due_minor,
                      i.finalized_at,
                      t.stripe_customer_id as customer_id, t.tax_rate,
                      (select s.provider_invoice_id from app.invoice_status_events s
                        where s.invoice_id = i.invoice_id and s.source = %(source)s
                        order by s.event_seq limit 1) as pushed_as
               from app.finalized_invoices i
               join app.tenants t on t.tenant_id = i.tenant_id
               where %(month)s::date is null or i.period_start = %(month)s::date::timestamptz
               order by i.period_start, i.invoice_id""",
            {"month": month, "source": PUSH_SOURCE},
        ).fetchall()
        lines: dict[str, list[LineToPush]] = {}
        for row in cur.execute(
            """select invoice_id, line_id, amount_minor, description, service_start, service_end
               from app.finalized_invoice_lines
               where invoice_id = any(%(ids)s)
               order by invoice_id, line_id""",
            # an invoice already in Stripe is skipped: its lines are not needed
            {"ids": [i["invoice_id"] for i in invoices if i["pushed_as"] is None]},
        ):
            invoice_id = row.pop("invoice_id")
            lines.setdefault(invoice_id, []).append(LineToPush(**row))
    result = []
    for invoice in invoices:
        tax_rate: Decimal = invoice.pop("tax_rate")
        tax_minor: int = invoice.pop("tax_minor")
        own = lines.get(invoice["invoice_id"], [])
        if tax_minor:
            own.append(LineToPush("tax", tax_minor, f"Tax {tax_rate * 100:g}%", None, None))
        result.append(InvoiceToPush(**invoice, lines=tuple(own)))
    return result


def _describe(step: str, exc: stripe.StripeError) -> str:
    param = getattr(exc, "param", None)
    where = f", parameter {param}" if param else ""
    status = f"HTTP {exc.http_status}" if exc.http_status else "no response"
    code = f" {exc.code}" if exc.code else ""
    message = exc.user_message or str(exc) or type(exc).__name__
    return f"Stripe refused {step} ({status}{code}{where}): {message}"


@contextmanager
def _step(name: str) -> Iterator[None]:
    try:
        yield
    except stripe.StripeError as exc:
        raise StepFailed(_describe(name, exc)) from exc


def _metadata(obj: Any, key: str) -> str | None:
    metadata = obj.to_dict().get("metadata") or {}
    value = metadata.get(key)
    return str(value) if value is not None else None


def _find_stripe_invoice(
    client: stripe.StripeClient, invoice: InvoiceToPush, customers: list[str]
) -> Any | None:
    """The Stripe invoice an earlier push made, under any customer a push of it used."""
    since = int((invoice.finalized_at - timedelta(days=1)).timestamp())
    for customer in customers:
        params: dict[str, Any] = {"customer": customer, "created": {"gte": since}, "limit": 100}
        for candidate in client.v1.invoices.list(params).auto_paging_iter():  # type: ignore[arg-type]
            if _metadata(candidate, "billing_invoice_id") == invoice.invoice_id:
                return candidate
    return None


def _push_one(client: stripe.StripeClient, invoice: InvoiceToPush, customers: list[str]) -> Any:
    """Steps 1-3 for one invoice; returns the finalized Stripe invoice."""
    ours = invoice.invoice_id
    with _step("the invoice lookup"):
        found = _find_stripe_invoice(client, invoice, customers)
    if found is None:
        with _step("the invoice creation"):
            found = client.v1.invoices.create(
                {
                    "customer": invoice.customer_id or "",
                    "currency": invoice.currency,
                    "auto_advance": False,
                    "collection_method": "charge_automatically",
                    "pending_invoice_items_behavior": "exclude",
                    "description": f"{invoice.period_start:%B %Y}",
                    "metadata": {"billing_invoice_id": ours, "tenant_id": invoice.tenant_id},
                },
                {"idempotency_key": f"billing-invoice-{ours}"},
            )
    if found.status == "draft":
        with _step("the invoice items lookup"):
            present = {
                _metadata(item, "billing_line_id")
                for item in client.v1.invoice_items.list(
                    {"invoice": found.id, "limit": 100}
                ).auto_paging_iter()
            }
        for line in invoice.lines:
            if line.line_id in present:
                continue
            params: dict[str, Any] = {
                "customer": found.customer,  # the draft's, should the tenant's have changed
                "invoice": found.id,
                "currency": invoice.currency,
                "amount": line.amount_minor,
                "description": line.description,
                "metadata": {"billing_invoice_id": ours, "billing_line_id": line.line_id},
            }
            if line.service_start and line.service_end:
                params["period"] = {
                    "start": int(line.service_start.timestamp()),
                    "end": int(line.service_end.timestamp()),
                }
            with _step(f"line {line.line_id}"):
                client.v1.invoice_items.create(
                    params,  # type: ignore[arg-type]
                    {"idempotency_key": f"billing-line-{ours}-{line.line_id}"},
                )
        # Totals are compared before finalizing: a finalized invoice is being collected.
        with _step("the draft's total"):
            found = client.v1.invoices.retrieve(found.id)
        _same_total(found, invoice, "left as a draft, not finalized")
        with _step("the finalization"):
            found = client.v1.invoices.finalize_invoice(
                found.id, {"auto_advance": True}, {"idempotency_key": f"billing-finalize-{ours}"}
            )
    _same_total(found, invoice, "not recorded")
    return found


def _same_total(found: Any, invoice: InvoiceToPush, then: str) -> None:
    if found.total != invoice.amount_due_minor:
        raise StepFailed(
            f"Stripe invoice {found.id} totals {found.total} but ours is "
            f"{invoice.amount_due_minor}"
            f" minor units; {then}: look at it in Stripe"
        )


def push_invoices(
    month: date | None = None,
    settings: Settings | None = None,
    *,
    client: stripe.StripeClient | None = None,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[PushResult], None] | None = None,
) -> PushReport:
    """Push the finalized invoices not yet in Stripe (of ``month``, or all)."""
    settings = settings or get_settings()
    client = client or stripe_client(settings)
    report = PushReport()
    with connect(settings, autocommit=True) as conn:
        if not conn.execute("select pg_try_advisory_lock(%s)", (PUSH_LOCK,)).fetchone()[0]:  # type: ignore[index]
            raise PushInProgress("another Stripe push is running on this warehouse")
        try:
            todo = invoices_to_push(conn, month)
            if on_start:
                on_start(len(todo))
            for invoice in todo:
                result = _push_and_record(conn, client, invoice)
                report.results.append(result)
                if on_result:
                    on_result(result)
        finally:
            # released now, not when the server notices the closed connection: a push
            # started right after this one must not find the lock still held
            conn.execute("select pg_advisory_unlock(%s)", (PUSH_LOCK,))
    return report


def _push_and_record(
    conn: psycopg.Connection, client: stripe.StripeClient, invoice: InvoiceToPush
) -> PushResult:
    def result(outcome: Outcome, provider_id: str | None = None, message: str = "") -> PushResult:
        return PushResult(invoice.invoice_id, invoice.tenant_id, outcome, provider_id, message)

    if invoice.pushed_as:
        return result("skipped", invoice.pushed_as)
    if not invoice.customer_id:
        return result(
            "failed",
            message=f"tenant {invoice.tenant_id!r} has no stripe_customer_id: set it in the "
            "catalog and push again",
        )
    # recorded before anything is created in Stripe, so a later push finds it there
    conn.execute(
        """insert into app.stripe_push_attempts (invoice_id, customer_id) values (%s, %s)
           on conflict do nothing""",
        (invoice.invoice_id, invoice.customer_id),
    )
    customers = [
        row[0]
        for row in conn.execute(
            """select customer_id from app.stripe_push_attempts where invoice_id = %s
               order by customer_id = %s desc, first_at""",
            (invoice.invoice_id, invoice.customer_id),
        ).fetchall()
    ]
    try:
        pushed = _push_one(client, invoice, customers)
    except StepFailed as exc:
        return result("failed", message=str(exc))
    conn.execute(
        """insert into app.invoice_status_events (invoice_id, status, provider_invoice_id, source)
           values (%s, 'pending', %s, %s)""",
        (invoice.invoice_id, pushed.id, PUSH_SOURCE),
    )
    return result("pushed", pushed.id)
