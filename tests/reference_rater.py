"""A small pure-Python rater written from CONTRACT.md's billing rules, independent of the dbt
models, with exact fractions: tests compare its invoices with the warehouse's."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from warehouse.catalog import Catalog, Charge, Plan, Pricing
from warehouse.currencies import MINOR_UNITS


@dataclass(frozen=True)
class RawEvent:
    seq: int
    tenant_id: str
    metric: str
    amount: Decimal
    ts: datetime
    key: str
    metadata: dict[str, Any] | None


@dataclass(frozen=True)
class SubEvent:
    seq: int
    subscription_id: str
    tenant_id: str
    action: str
    plan: str | None
    at: datetime
    at_period_end: bool = False


@dataclass
class Invoice:
    """Lines are (type, metric or discount id, amount); credits (grant id, amount) are used
    after tax and are not in the subtotal."""

    tenant_id: str
    currency: str
    lines: list[tuple[str, str | None, int]] = field(default_factory=list)
    subtotal: int = 0
    tax: int = 0
    total: int = 0
    credits: list[tuple[str, int]] = field(default_factory=list)
    amount_due: int = 0


def month_bounds(month: date) -> tuple[datetime, datetime]:
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def add_years(moment: datetime, years: int) -> datetime:
    """PostgreSQL's `+ interval 'n years'`: Feb 29 becomes Feb 28 in a common year."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)


def half_up(value: Fraction) -> int:
    """Round half away from zero to an integer."""
    sign = -1 if value < 0 else 1
    return sign * math.floor(abs(value) + Fraction(1, 2))


def dedupe(events: list[RawEvent]) -> list[RawEvent]:
    first: dict[tuple[str, str], RawEvent] = {}
    for event in sorted(events, key=lambda e: e.seq):
        first.setdefault((event.tenant_id, event.key), event)
    return list(first.values())


@dataclass(frozen=True)
class Interval:
    subscription_id: str
    tenant_id: str
    plan: str
    start: datetime
    end: datetime
    in_trial: bool = False
    bills_usage: bool = True


def intervals(subs: list[SubEvent], plans: dict[str, Plan]) -> list[Interval]:
    """The subscription history as intervals on one plan, split where the trial ends."""
    out = []
    by_sub: dict[str, list[tuple[datetime, int, SubEvent]]] = {}
    for ev in subs:
        at = ev.at
        if ev.action == "cancel" and ev.at_period_end:
            at = month_bounds(at.date())[1]
        by_sub.setdefault(ev.subscription_id, []).append((at, ev.seq, ev))
    for sub_id, items in by_sub.items():
        # the first cancel ends the subscription: a plan change scheduled after it is dropped
        ended = min((at for at, _, ev in items if ev.action == "cancel"), default=None)
        plans_on = sorted(
            (at, seq, ev)
            for at, seq, ev in items
            if ev.action != "cancel" and (ended is None or at < ended)
        )
        # the trial: the plan it started on says how long, and whether its usage is billed
        start_at, _, first = min((at, seq, ev) for at, seq, ev in items if ev.action == "start")
        assert first.plan is not None
        trial = plans[first.plan]
        trial_end = start_at + timedelta(days=trial.trial_days)
        ended_in_trial = ended is not None and ended <= trial_end
        for i, (at, _, ev) in enumerate(plans_on):
            end = plans_on[i + 1][0] if i + 1 < len(plans_on) else ended
            end = end or datetime.max.replace(tzinfo=UTC)
            if end <= at:
                continue
            assert ev.plan is not None
            if at < trial_end:
                bills = trial.trial_bills_usage and not ended_in_trial
                until = min(end, trial_end)
                out.append(Interval(sub_id, ev.tenant_id, ev.plan, at, until, True, bills))
            if end > trial_end:
                out.append(Interval(sub_id, ev.tenant_id, ev.plan, max(at, trial_end), end))
    return out


def quantity(metric_aggregation: str, prop: str | None, events: list[RawEvent]) -> Fraction:
    if not events:
        return Fraction(0)
    if metric_aggregation == "sum":
        return sum((Fraction(e.amount) for e in events), Fraction(0))
    if metric_aggregation == "count":
        return Fraction(len(events))
    if metric_aggregation == "max":
        return max(Fraction(e.amount) for e in events)
    if metric_aggregation == "unique_count":
        assert prop is not None
        values = {(e.metadata or {}).get(prop) for e in events}
        values.discard(None)
        return Fraction(len({str(v) for v in values}))
    if metric_aggregation == "latest":
        return Fraction(max(events, key=lambda e: (e.ts, e.seq)).amount)
    raise ValueError(metric_aggregation)


def dimension_value(event: RawEvent, name: str) -> str | None:
    """A metadata value as the SQL reads it: text, a JSON number or boolean as JSON."""
    value = (event.metadata or {}).get(name)
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def priced_groups(charge: Charge, events: list[RawEvent]) -> list[tuple[Pricing, list[RawEvent]]]:
    """The events of a charge grouped by its group_by values, each group with its price (the
    combination's, else the charge's own); a group priced `not_billed` is left out."""
    if not charge.group_by:
        return [(charge, events)]
    groups: dict[tuple[str | None, ...], list[RawEvent]] = {}
    for event in events:
        values = tuple(dimension_value(event, name) for name in charge.group_by)
        groups.setdefault(values, []).append(event)
    out: list[tuple[Pricing, list[RawEvent]]] = []
    for values, grouped in groups.items():
        listed = [p for p in charge.prices if tuple(p.when[n] for n in charge.group_by) == values]
        pricing: Pricing = listed[0] if listed else charge
        if pricing.model != "not_billed":
            out.append((pricing, grouped))
    return out


def percentage_fees(pricing: Pricing, events: list[RawEvent], fraction: Fraction) -> Fraction:
    """The events in order: the first free_units (prorated, whole events) are free, the
    first free_amount (prorated) of the amounts is not charged the rate; every other event
    pays rate x its charged amount + fixed_fee, between min_per_event and max_per_event."""
    assert pricing.rate is not None
    free_units = None if pricing.free_units is None else pricing.free_units * fraction
    free_left = Fraction(pricing.free_amount or 0) * fraction
    total = Fraction(0)
    for rank, event in enumerate(sorted(events, key=lambda e: (e.ts, e.seq)), start=1):
        amount = Fraction(event.amount)
        charged = max(amount - free_left, Fraction(0))
        free_left = max(free_left - amount, Fraction(0))
        if free_units is not None and rank <= free_units:
            continue
        fee = charged * Fraction(pricing.rate) + Fraction(pricing.fixed_fee or 0)
        if pricing.min_per_event is not None:
            fee = max(fee, Fraction(pricing.min_per_event))
        if pricing.max_per_event is not None:
            fee = min(fee, Fraction(pricing.max_per_event))
        total += fee
    return total


def price(charge: Pricing, billable: Fraction) -> Fraction:
    if charge.model == "per_unit":
        assert charge.unit_price is not None
        return billable * Fraction(charge.unit_price)
    if charge.model == "package":
        assert charge.package_size and charge.package_price is not None
        return math.ceil(billable / charge.package_size) * Fraction(charge.package_price)
    assert charge.tiers
    total = Fraction(0)
    lower = Fraction(0)
    for tier in charge.tiers:
        upper = None if tier.up_to is None else Fraction(tier.up_to)
        if charge.model == "graduated":
            top = billable if upper is None else min(billable, upper)
            if billable > lower:
                total += max(top - lower, Fraction(0)) * Fraction(tier.unit_price)
                total += Fraction(tier.flat_fee)
        elif billable > lower and (upper is None or billable <= upper):
            return billable * Fraction(tier.unit_price) + Fraction(tier.flat_fee)
        if upper is not None:
            lower = upper
    return total


def rate_month(
    catalog: Catalog,
    events: list[RawEvent],
    subs: list[SubEvent],
    month: date,
    used: dict[str, int] | None = None,
    voided: frozenset[str] = frozenset(),
) -> dict[str, Invoice]:
    """Invoices of ``month`` by tenant, with every plan at its catalog version; ``used``:
    what finalized invoices used of each credit grant, ``voided`` the grants voided."""
    plans: dict[str, Plan] = {p.key: p for p in catalog.plans}
    metrics = {m.key: m for m in catalog.metrics}
    tenants = {t.id: t for t in catalog.tenants}
    kept = dedupe(events)
    m_start, m_end = month_bounds(month)
    month_seconds = Fraction(int((m_end - m_start).total_seconds()))
    invoices: dict[str, Invoice] = {}
    for interval in intervals(subs, plans):
        tenant_id, valid_from, valid_to = interval.tenant_id, interval.start, interval.end
        seg_start, seg_end = max(valid_from, m_start), min(valid_to, m_end)
        if seg_start >= seg_end:
            continue
        plan = plans[interval.plan]
        exponent = Fraction(10) ** MINOR_UNITS[plan.currency]
        invoice = invoices.setdefault(tenant_id, Invoice(tenant_id, plan.currency))
        fraction = Fraction(int((seg_end - seg_start).total_seconds())) / month_seconds
        if interval.in_trial:
            pass  # a trial bills no base fee
        elif plan.base_price > 0 and plan.interval == "month":
            invoice.lines.append(
                ("base_fee", None, half_up(Fraction(plan.base_price) * fraction * exponent))
            )
        elif plan.base_price > 0:
            # the whole year on the month each yearly period starts, if it starts
            k = 0
            while add_years(valid_from, k) < min(valid_to, m_end):
                anniversary = add_years(valid_from, k)
                if seg_start <= anniversary < seg_end:
                    invoice.lines.append(
                        ("base_fee", None, half_up(Fraction(plan.base_price) * exponent))
                    )
                k += 1
            # the unused part of the year, credited when the subscription ends early
            if valid_to == seg_end and valid_to.year < 9999:
                k = 0
                while add_years(valid_from, k + 1) < valid_to:
                    k += 1
                start, end = add_years(valid_from, k), add_years(valid_from, k + 1)
                unused = Fraction(
                    int((end - valid_to).total_seconds()), int((end - start).total_seconds())
                )
                if unused > 0:
                    invoice.lines.append(
                        ("base_fee", None, half_up(-Fraction(plan.base_price) * unused * exponent))
                    )
        segment_usage = 0
        for charge in plan.charges if interval.bills_usage else []:
            metric = metrics[charge.metric]
            in_segment = [
                e
                for e in kept
                if e.tenant_id == tenant_id
                and e.metric == charge.metric
                and seg_start <= e.ts < seg_end
            ]
            for pricing, grouped in priced_groups(charge, in_segment):
                if pricing.model == "percentage":
                    amount = percentage_fees(pricing, grouped, fraction)
                else:
                    q = quantity(metric.aggregation, metric.property, grouped)
                    billable = max(q - Fraction(pricing.included) * fraction, Fraction(0))
                    amount = price(pricing, billable)
                invoice.lines.append(("usage", charge.metric, half_up(amount * exponent)))
                segment_usage += invoice.lines[-1][2]
        # a minimum commitment: the segment's usage lines brought up to its prorated minimum
        if plan.minimum_commitment is not None and not interval.in_trial:
            minimum = half_up(Fraction(plan.minimum_commitment) * fraction * exponent)
            if segment_usage < minimum:
                invoice.lines.append(("minimum", None, minimum - segment_usage))
    # a tenant with nothing billed (a trial) has no invoice
    invoices = {tenant: invoice for tenant, invoice in invoices.items() if invoice.lines}
    for invoice in invoices.values():
        apply_discounts(catalog, invoice, month)
        invoice.subtotal = sum(amount for _, _, amount in invoice.lines)
        invoice.tax = half_up(invoice.subtotal * Fraction(tenants[invoice.tenant_id].tax_rate))
        invoice.total = invoice.subtotal + invoice.tax
        apply_credits(catalog, invoice, m_end, used or {}, voided)
        invoice.amount_due = invoice.total - sum(amount for _, amount in invoice.credits)
    return invoices


def apply_discounts(catalog: Catalog, invoice: Invoice, month: date) -> None:
    """The discounts in effect in ``month``, in the order they started (then id): each takes
    its rate of the lines it applies to (or its amount, at most those lines), and all of
    them at most what the invoice came to before them."""
    exponent = Fraction(10) ** MINOR_UNITS[invoice.currency]
    left = max(sum(amount for _, _, amount in invoice.lines), 0)
    charged = list(invoice.lines)
    index = month.year * 12 + month.month
    for discount in sorted(catalog.discounts, key=lambda d: (d.starts, d.id)):
        year, first = (int(part) for part in discount.starts.split("-"))
        start = year * 12 + first
        if (
            discount.tenant_id != invoice.tenant_id
            or index < start
            or (discount.months is not None and index >= start + discount.months)
        ):
            continue
        eligible = max(
            sum(
                amount
                for line_type, metric, amount in charged
                if not discount.applies_to
                or (line_type == "usage" and metric in discount.applies_to)
                or (line_type == "base_fee" and "base_fee" in discount.applies_to)
            ),
            0,
        )
        if discount.rate is not None:
            wanted = half_up(eligible * Fraction(discount.rate))
        else:
            assert discount.amount is not None
            wanted = int(Fraction(discount.amount) * exponent)
        taken = min(wanted, eligible, left)
        left -= taken
        if taken > 0:
            invoice.lines.append(("discount", discount.id, -taken))


def apply_credits(
    catalog: Catalog,
    invoice: Invoice,
    period_end: datetime,
    used: dict[str, int],
    voided: frozenset[str],
) -> None:
    """The tenant's grants in its currency, usable at the period's end, in order of priority,
    soonest expiry, grant time and id, each paying what the ones before left of the total."""
    exponent = Fraction(10) ** MINOR_UNITS[invoice.currency]
    tenant = next(t for t in catalog.tenants if t.id == invoice.tenant_id)
    usable = [
        g
        for g in catalog.credit_grants
        if g.tenant_id == invoice.tenant_id
        and (g.currency or tenant.currency) == invoice.currency
        and g.id not in voided
        and g.granted_at < period_end
        and (g.expires_at is None or g.expires_at >= period_end)
    ]
    far = datetime.max.replace(tzinfo=UTC)
    left = invoice.total
    for grant in sorted(
        usable, key=lambda g: (g.priority, g.expires_at or far, g.granted_at, g.id)
    ):
        balance = int(Fraction(grant.amount) * exponent) - used.get(grant.id, 0)
        taken = min(balance, max(left, 0))
        if taken > 0:
            invoice.credits.append((grant.id, taken))
            left -= taken
