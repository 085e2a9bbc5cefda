"""Randomized catalogs, subscription histories and usage (hypothesis), with minimum
commitments, discounts and credit grants: the dbt invoices match the independent pure-Python
rater to the minor unit."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.writer import Event, copy_events
from orchestration.pipeline import run_monthly
from tests.conftest import database_copy
from tests.engine_helpers import assert_matches, load_raw, warehouse_invoices
from tests.reference_rater import rate_month
from warehouse.catalog import apply_catalog, parse_catalog
from warehouse.currencies import MINOR_UNITS
from warehouse.migrate import apply_migrations
from warehouse.settings import get_settings
from warehouse.subscriptions import record_subscription_event

pytestmark = pytest.mark.slow
OCT = date(2026, 10, 1)
OCT_START = datetime(2026, 10, 1, tzinfo=UTC)
METRICS = [
    {"key": "calls", "aggregation": "sum", "dimensions": ["model", "region"]},
    {"key": "builds", "aggregation": "count"},
    {"key": "gb", "aggregation": "max", "dimensions": ["region"]},
    {"key": "users", "aggregation": "unique_count", "property": "user_id"},
    {"key": "seats", "aggregation": "latest"},
]


def decimals(places: int, high: int, low: int = 0) -> st.SearchStrategy[str]:
    return st.integers(low, high * 10**places).map(lambda n: str(Decimal(n).scaleb(-places)))


def money(draw: st.DrawFn, currency: str, high: int) -> str:
    """A positive amount in the currency's minor units."""
    return draw(decimals(MINOR_UNITS[currency], high, low=1))


NOV_START = datetime(2026, 11, 1, tzinfo=UTC)


@st.composite
def discounts(draw: st.DrawFn, tenant: str, currency: str, charged: list[str]) -> dict[str, Any]:
    """A discount on the tenant: a rate or an amount, starting before, in or after October,
    for some months or forever, on the whole invoice or on some charges."""
    discount: dict[str, Any] = {
        "tenant_id": tenant,
        "starts": draw(st.sampled_from(["2026-08", "2026-10", "2026-10", "2026-11"])),
        "applies_to": draw(st.lists(st.sampled_from([*charged, "base_fee"]), unique=True)),
    }
    if draw(st.booleans()):
        discount["rate"] = draw(decimals(2, 1, low=1))
    else:
        discount["amount"] = money(draw, currency, 300)
    months = draw(st.sampled_from([None, 1, 3]))
    if months is not None:
        discount["months"] = months
    return discount


@st.composite
def grants(draw: st.DrawFn, tenant: str, currency: str) -> dict[str, Any]:
    """A credit grant, usable by October's invoice or not: granted before or after the
    period ends, expiring before it, exactly at its end, later or never."""
    granted = OCT_START + timedelta(seconds=draw(st.integers(-30 * 86400, 35 * 86400)))
    expiry = draw(st.sampled_from(["never", "before", "at_end", "later"]))
    expires = {
        "never": None,
        "before": granted + timedelta(days=1),
        "at_end": max(NOV_START, granted + timedelta(seconds=1)),
        "later": max(NOV_START, granted) + timedelta(days=30),
    }[expiry]
    grant: dict[str, Any] = {
        "tenant_id": tenant,
        "amount": money(draw, currency, 200),
        "granted_at": granted.isoformat(),
        "priority": draw(st.sampled_from([0, 0, 1, 5])),
    }
    if expires is not None:
        grant["expires_at"] = expires.isoformat()
    return grant


# the values events carry for the dimensions (or none), and those prices name
DIMENSION_VALUES = {"model": ["small", "large", "x"], "region": ["eu", "us"]}


@st.composite
def pricings(draw: st.DrawFn, percentage: bool) -> dict[str, Any]:
    """A price: one of the unit models, or (on a sum metric) a percentage."""
    models = ["per_unit", "package", "graduated", "volume"] + ["percentage"] * percentage
    model = draw(st.sampled_from(models))
    if model == "percentage":
        free = draw(st.sampled_from(["none", "free_units", "free_amount"]))
        optional = {
            "fixed_fee": draw(st.sampled_from([None, "0.30", "0.05"])),
            "min_per_event": draw(st.sampled_from([None, "0.20"])),
            "max_per_event": draw(st.sampled_from([None, "0.45", "5.00"])),
            "free_units": draw(st.integers(0, 6)) if free == "free_units" else None,
            "free_amount": draw(decimals(2, 400)) if free == "free_amount" else None,
        }
        return {
            "model": model,
            "rate": draw(decimals(3, 1)),
            **{key: value for key, value in optional.items() if value is not None},
        }
    charge: dict[str, Any] = {
        "model": model,
        "included": draw(st.sampled_from([0, 0, 5, 50, 1000])),
    }
    if model == "per_unit":
        charge["unit_price"] = draw(decimals(6, 3))
    elif model == "package":
        charge["package_size"] = draw(st.integers(1, 50))
        charge["package_price"] = draw(decimals(3, 20))
    else:
        bounds = sorted(draw(st.sets(st.integers(1, 400), min_size=0, max_size=3)))
        charge["tiers"] = [
            {"up_to": bound, "unit_price": draw(decimals(5, 2)), "flat_fee": draw(decimals(2, 5))}
            for bound in [*bounds, None]
        ]
    return charge


@st.composite
def charges(draw: st.DrawFn, metric: str) -> dict[str, Any]:
    """A charge, priced per combination of some of the metric's dimensions (or not)."""
    spec = next(m for m in METRICS if m["key"] == metric)
    percentage = spec["aggregation"] == "sum"
    charge = {"metric": metric, **draw(pricings(percentage))}
    dimensions = spec.get("dimensions", [])
    group_by = draw(st.permutations(dimensions))[: draw(st.integers(0, len(dimensions)))]
    if group_by:
        if draw(st.booleans()):
            charge = {"metric": metric, "model": "not_billed"}
        combinations = draw(
            st.lists(
                st.tuples(*(st.sampled_from(DIMENSION_VALUES[name]) for name in group_by)),
                min_size=1,
                max_size=3,
                unique=True,
            )
        )
        charge["group_by"] = group_by
        charge["prices"] = [
            {"when": dict(zip(group_by, values, strict=True)), **draw(pricings(percentage))}
            for values in combinations
        ]
    return charge


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    plans, tenants, subs, changes, offers, credits = [], [], [], [], [], []
    for i, currency in enumerate(
        draw(st.lists(st.sampled_from(["usd", "jpy", "kwd"]), min_size=2, max_size=4))
    ):
        metrics = draw(
            st.lists(
                st.sampled_from([m["key"] for m in METRICS]), min_size=1, max_size=3, unique=True
            )
        )
        plans.append(
            {
                "key": f"p{i}",
                "name": f"Plan {i}",
                "interval": draw(st.sampled_from(["month", "month", "year"])),
                "currency": currency,
                "base_price": draw(decimals(3, 500)),
                "charges": [draw(charges(m)) for m in metrics],
                "trial_days": draw(st.sampled_from([0, 0, 0, 7, 14, 30])),
                "trial_bills_usage": draw(st.booleans()),
            }
        )
        if draw(st.booleans()):
            plans[-1]["minimum_commitment"] = money(draw, currency, 400)
        for d in range(draw(st.integers(0, 2))):
            offers.append({"id": f"d{i}_{d}", **draw(discounts(f"t{i}", currency, metrics))})
        for g in range(draw(st.integers(0, 3))):
            credits.append({"id": f"g{i}_{g}", **draw(grants(f"t{i}", currency))})
        tenants.append(
            {"id": f"t{i}", "name": f"T{i}", "currency": currency, "tax_rate": draw(decimals(4, 0))}
        )
        start = OCT_START + timedelta(seconds=draw(st.integers(-40 * 86400, 20 * 86400)))
        subs.append(
            {"id": f"s{i}", "tenant_id": f"t{i}", "plan": f"p{i}", "start": start.isoformat()}
        )
        same_currency = [p for p in plans if p["currency"] == currency and p["key"] != f"p{i}"]
        change = draw(
            st.sampled_from(["none", "cancel_now", "cancel_end", "change", "cancel_drops_change"])
        )
        at = max(start, OCT_START) + timedelta(seconds=draw(st.integers(1, 25 * 86400)))
        if change == "change" and same_currency:
            changes.append((f"s{i}", f"t{i}", "change_plan", at, same_currency[0]["key"], False))
        elif change == "cancel_drops_change" and same_currency:
            # a move scheduled later, then a cancel before it: the move is dropped
            later = at + timedelta(seconds=draw(st.integers(1, 5 * 86400)))
            changes.append((f"s{i}", f"t{i}", "change_plan", later, same_currency[0]["key"], False))
            changes.append((f"s{i}", f"t{i}", "cancel", at, None, False))
        elif change.startswith("cancel"):
            changes.append((f"s{i}", f"t{i}", "cancel", at, None, change == "cancel_end"))
    catalog = {
        "metrics": METRICS,
        "plans": plans,
        "tenants": tenants,
        "subscriptions": subs,
        "discounts": offers,
        "credit_grants": credits,
    }
    events = []
    for n in range(draw(st.integers(20, 120))):
        tenant = draw(st.sampled_from(tenants))["id"]
        metric = draw(st.sampled_from(METRICS))["key"]
        ts = OCT_START + timedelta(seconds=draw(st.integers(-86400, 32 * 86400)))
        events.append(
            Event(
                tenant,
                metric,
                Decimal(draw(decimals(2, 300))),
                ts,
                f"e{n}",
                {
                    "user_id": f"u{draw(st.integers(0, 6))}",
                    **{
                        name: value
                        for name, values in DIMENSION_VALUES.items()
                        if (value := draw(st.sampled_from([*values, None]))) is not None
                    },
                },
            )
        )
    return {"catalog": catalog, "changes": changes, "events": events}


@settings(
    max_examples=int(os.environ.get("RATER_EXAMPLES", "6")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@pytest.mark.minutes(0.3)
@given(scenario=scenarios())
def test_dbt_invoices_match_the_reference_rater(
    scenario: dict[str, Any], server_url: str, set_up_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with database_copy(server_url, set_up_database) as url:
        monkeypatch.setenv("BILLING_DATABASE_URL", url)
        get_settings.cache_clear()
        catalog = parse_catalog(yaml.safe_dump(scenario["catalog"]), "random.yaml")
        with psycopg.connect(url) as conn:
            apply_migrations(conn)
            apply_catalog(conn, catalog, "random.yaml")
            for sub, tenant, action, at, plan, at_period_end in scenario["changes"]:
                record_subscription_event(
                    conn, sub, tenant, action, at, plan_key=plan, at_period_end=at_period_end
                )
            copy_events(conn, scenario["events"])
        run_monthly(OCT, quiet=True)
        events, subs = load_raw(url)
        assert_matches(warehouse_invoices(url, OCT), rate_month(catalog, events, subs, OCT))
    get_settings.cache_clear()
