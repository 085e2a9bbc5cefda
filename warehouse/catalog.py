"""The catalog YAML (metrics, plans, tenants, subscriptions, discounts, credit grants):
validation and loading.

Validation is all-or-nothing: every problem is reported with the file, the path inside it
and what would be accepted, and nothing is written unless the whole catalog is valid.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg
import yaml
from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

from warehouse.currencies import MINOR_UNITS
from warehouse.db import in_utc
from warehouse.subscriptions import SubscriptionError, running, start

MAX_PRICE_DECIMALS = 12
MAX_AMOUNT = 10**12  # a commitment, a discount's or a grant's amount, in major units
# a price or a fee, in major units: the largest price Spark's product of money takes
# (macros/money.sql, `times`), far below PostgreSQL's bigint of minor units
MAX_PRICE = 10**10
MAX_TRIAL_DAYS = 366
KEY_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
# Pricing by dimension: a metric splits its usage by at most this many metadata keys, and a
# price names each value it matches as text without quotes, backslashes or control
# characters (so that its key below is the text the SQL builds for the same values).
MAX_DIMENSIONS = 3
# the aggregations whose day (or month) is made of its combinations': a sum, or the largest
DIMENSION_AGGREGATIONS = ("sum", "count", "max")
DIMENSION_VALUE_PATTERN = r'^[^"\\\x00-\x1f\x7f]{1,200}$'
# The one identifier rule (CONTRACT.md) of tenants, subscriptions and every id a user names:
# the pattern for pydantic, ID_RE for Python (fullmatch), ID_RULE for messages.
ID_CHARS = "A-Za-z0-9_.:-"
ID_PATTERN = rf"^[{ID_CHARS}]{{1,64}}$"
ID_RE = re.compile(f"[{ID_CHARS}]{{1,64}}")
ID_RULE = f"1 to 64 of {ID_CHARS} (letters, digits, _ . : -)"


def tenant_exists(conn: psycopg.Connection[Any], tenant_id: str) -> bool:
    """Whether ``tenant_id`` is a tenant of the catalog (tenants are never removed)."""
    return bool(
        conn.execute("select 1 from app.tenants where tenant_id = %s", (tenant_id,)).fetchone()
    )


def _decimal(value: Any) -> Decimal:
    """A non-negative decimal from a string or an integer; floats are refused as inexact."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f'must be a decimal string like "0.0004" or an integer, not {value!r}')
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite decimal")
    if number < 0:
        raise ValueError(f"{value!r} is negative; prices and amounts must be >= 0")
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > MAX_PRICE_DECIMALS:
        raise ValueError(f"{value!r} has more than {MAX_PRICE_DECIMALS} decimal places")
    return number


def _currency(value: str) -> str:
    if value not in MINOR_UNITS:
        raise ValueError(
            f"{value!r} is not a supported ISO 4217 code in lower case (e.g. usd, eur, jpy)"
        )
    return value


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an RFC 3339 timestamp") from None
    else:
        raise ValueError(f"{value!r} is not an RFC 3339 timestamp")
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset; write it like 2026-01-01T00:00:00Z")
    return in_utc(parsed, value)


def _price(value: Any) -> Decimal:
    """A price or a fee: a decimal below MAX_PRICE, which every run can bill (a price of
    1e400 was stored, and every tenant's invoices failed at the month's run)."""
    number = _decimal(value)
    if number >= MAX_PRICE:
        raise ValueError(f"{value!r} is not below {MAX_PRICE:,}, the largest price billed")
    return number


# a quantity, a rate or an amount checked on its own (check_amount)
Number = Annotated[Decimal, BeforeValidator(_decimal)]
# a price of a unit, a package or a tier, or a fee
Money = Annotated[Decimal, BeforeValidator(_price)]
Currency = Annotated[str, AfterValidator(_currency)]
Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Dimension = Annotated[str, Field(pattern=KEY_PATTERN)]
DimensionValue = Annotated[str, Field(pattern=DIMENSION_VALUE_PATTERN, strict=True)]


class Metric(_Strict):
    key: str = Field(pattern=KEY_PATTERN)
    aggregation: Literal["sum", "count", "max", "unique_count", "latest"]
    property: str | None = Field(default=None, min_length=1, max_length=128)
    allow_negative: bool = False
    # metadata keys whose values split the usage (fct_usage_daily, GET /v1/usage)
    dimensions: list[Dimension] = Field(default=[], max_length=MAX_DIMENSIONS)


class Tier(_Strict):
    up_to: Number | None
    unit_price: Money
    flat_fee: Money = Decimal(0)


class Quota(_Strict):
    limit: Number
    policy: Literal["hard", "soft"]


PricingModel = Literal["per_unit", "package", "graduated", "volume", "percentage", "not_billed"]


class Pricing(_Strict):
    """How a quantity is priced: one of the four unit models, `percentage` (a rate on the
    summed amount, with a fee, a minimum and a maximum per event and free units or a free
    amount per period), or `not_billed` (a price of a charge by dimension only)."""

    model: PricingModel | None = None
    unit_price: Money | None = None
    included: Number = Decimal(0)
    package_size: Annotated[int, Field(gt=0)] | None = None
    package_price: Money | None = None
    tiers: list[Tier] | None = None
    # percentage: the rate as a fraction ("0.029" is 2.9%), like a tenant's tax_rate
    rate: Number | None = None
    fixed_fee: Money | None = None
    min_per_event: Money | None = None
    max_per_event: Money | None = None
    free_units: Annotated[int, Field(ge=0, strict=True)] | None = None
    free_amount: Money | None = None


class Price(Pricing):
    """The price of one combination of a charge's `group_by` values."""

    when: dict[Dimension, DimensionValue]


class Charge(Pricing):
    """A metric's price; with `group_by`, the usage is priced per combination of those
    dimensions' values: by the `prices` entry whose `when` names them, else by the charge's
    own pricing (the default, which may be `not_billed`)."""

    metric: str
    quota: Quota | None = None
    group_by: list[Dimension] = Field(default=[], max_length=MAX_DIMENSIONS)
    prices: list[Price] = []


def dimension_key(group_by: list[str], values: dict[str, str]) -> str:
    """The key of a combination: a JSON object of the values in `group_by` order, without
    spaces. The SQL builds the same text from an event's metadata (macro dimension_key);
    a value the catalog accepts needs no escaping, so the two agree."""
    return "{" + ",".join(f'"{name}":"{values[name]}"' for name in group_by) + "}"


class Plan(_Strict):
    key: str = Field(pattern=KEY_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    interval: Literal["month", "year"]
    currency: Currency
    base_price: Money = Decimal(0)
    charges: list[Charge] = []
    # a trial from the subscription's start: no base fee, and usage billed only if it says so
    trial_days: Annotated[int, Field(ge=0, le=MAX_TRIAL_DAYS, strict=True)] = 0
    trial_bills_usage: Annotated[bool, Field(strict=True)] = False
    # the least the usage charges come to per month, prorated with the month's segments
    minimum_commitment: Number | None = None


class Tenant(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    currency: Currency
    tax_rate: Number = Decimal(0)
    stripe_customer_id: str | None = Field(default=None, min_length=1, max_length=255)


class Subscription(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    tenant_id: str
    plan: str
    start: Timestamp


MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
# free text stored as it is: anything PostgreSQL's text holds (no NUL)
TEXT_PATTERN = r"^[^\x00]*$"
BASE_FEE = "base_fee"


class Discount(_Strict):
    """A discount on a tenant's invoices: a `rate` (a fraction of the lines it applies to) or
    an `amount` (in the tenant's currency), from the month `starts` for `months` months or
    forever, on the whole invoice or on the charges `applies_to` names (metric keys, or
    base_fee). A record: never edited once applied."""

    id: str = Field(pattern=ID_PATTERN)
    tenant_id: str
    description: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=TEXT_PATTERN
    )
    rate: Number | None = None
    amount: Number | None = None
    starts: str = Field(pattern=MONTH_PATTERN)
    months: Annotated[int, Field(gt=0, le=1200, strict=True)] | None = None
    applies_to: list[str] = []


class CreditGrant(_Strict):
    """Prepaid credit for a tenant: `amount` in `currency` (the tenant's unless named),
    usable by the invoices of periods ending after `granted_at` and by `expires_at` (or
    forever), in order of `priority` (lowest first), then the soonest expiry. A record:
    never edited; a void is a record of its own."""

    id: str = Field(pattern=ID_PATTERN)
    tenant_id: str
    amount: Number
    currency: Currency | None = None
    granted_at: Timestamp
    expires_at: Timestamp | None = None
    priority: Annotated[int, Field(ge=0, le=1_000_000, strict=True)] = 0
    description: str = Field(default="", max_length=200, pattern=TEXT_PATTERN)


class Catalog(_Strict):
    metrics: list[Metric]
    plans: list[Plan]
    tenants: list[Tenant] = []
    subscriptions: list[Subscription] = []
    discounts: list[Discount] = []
    credit_grants: list[CreditGrant] = []


@dataclass(frozen=True)
class Problem:
    path: str
    message: str


@dataclass
class CatalogError(Exception):
    """The catalog file is invalid; ``problems`` lists every problem found."""

    source: str
    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.source}: {p.path}: {p.message}" for p in self.problems]
        return "\n".join(lines)


def _path(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)
# Timestamps stay strings so that their offsets are checked by our own parser.
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_catalog(text: str, source: str) -> Catalog:
    """Parse and validate a catalog document; raise CatalogError naming every problem."""
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(unknown)"
        raise CatalogError(source, [Problem(where, str(exc.problem))]) from None
    except yaml.YAMLError as exc:
        raise CatalogError(source, [Problem("(document)", str(exc))]) from None
    if not isinstance(document, dict):
        raise CatalogError(
            source, [Problem("(top level)", "must be a mapping with metrics, plans, ...")]
        )
    try:
        catalog = Catalog.model_validate(document)
    except ValidationError as exc:
        problems = [Problem(_path(err["loc"]), _message(err)) for err in exc.errors()]
        raise CatalogError(source, problems) from None
    problems = check_catalog(catalog)
    if problems:
        raise CatalogError(source, problems)
    return catalog


def _message(err: Any) -> str:
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown field; check its spelling against the catalog format"
    if err["type"] == "literal_error":
        return f"{message}, got {err['input']!r}"
    if err["type"] == "string_pattern_mismatch":
        return f"{err['input']!r} does not match {err['ctx']['pattern']}"
    return message


def _duplicates(items: list[str]) -> dict[int, str]:
    seen: set[str] = set()
    dupes: dict[int, str] = {}
    for index, key in enumerate(items):
        if key in seen:
            dupes[index] = key
        seen.add(key)
    return dupes


def check_catalog(catalog: Catalog) -> list[Problem]:
    """The rules that span fields: references, tier bounds, currencies, duplicate keys."""
    problems: list[Problem] = []
    for section, keys in (
        ("metrics", [m.key for m in catalog.metrics]),
        ("plans", [p.key for p in catalog.plans]),
        ("tenants", [t.id for t in catalog.tenants]),
        ("subscriptions", [s.id for s in catalog.subscriptions]),
        ("discounts", [d.id for d in catalog.discounts]),
        ("credit_grants", [g.id for g in catalog.credit_grants]),
    ):
        for index, key in _duplicates(keys).items():
            problems.append(Problem(f"{section}[{index}]", f"duplicate key {key!r}"))

    metrics = {m.key: m for m in catalog.metrics}
    for i, metric in enumerate(catalog.metrics):
        if metric.aggregation == "unique_count" and not metric.property:
            problems.append(
                Problem(f"metrics[{i}].property", "unique_count needs the metadata key to count")
            )
        if metric.aggregation != "unique_count" and metric.property:
            problems.append(
                Problem(f"metrics[{i}].property", "only a unique_count metric takes a property")
            )
        if metric.dimensions and metric.aggregation not in DIMENSION_AGGREGATIONS:
            problems.append(
                Problem(
                    f"metrics[{i}].dimensions",
                    f"a {metric.aggregation} metric has no dimensions: its day is not made of "
                    f"its parts (dimensions split {', '.join(DIMENSION_AGGREGATIONS)} metrics)",
                )
            )
        for index, key in _duplicates(metric.dimensions).items():
            problems.append(Problem(f"metrics[{i}].dimensions[{index}]", f"duplicate {key!r}"))

    for p, plan in enumerate(catalog.plans):
        for index, key in _duplicates([c.metric for c in plan.charges]).items():
            problems.append(
                Problem(f"plans[{p}].charges[{index}].metric", f"a second charge for {key!r}")
            )
        for c, charge in enumerate(plan.charges):
            problems.extend(_check_charge(f"plans[{p}].charges[{c}]", charge, metrics))

    plans = {p.key: p for p in catalog.plans}
    tenants = {t.id: t for t in catalog.tenants}
    for s, sub in enumerate(catalog.subscriptions):
        tenant = tenants.get(sub.tenant_id)
        sub_plan = plans.get(sub.plan)
        if tenant is None:
            problems.append(
                Problem(f"subscriptions[{s}].tenant_id", f"unknown tenant {sub.tenant_id!r}")
            )
        if sub_plan is None:
            problems.append(Problem(f"subscriptions[{s}].plan", f"unknown plan {sub.plan!r}"))
        if tenant is not None and sub_plan is not None and tenant.currency != sub_plan.currency:
            problems.append(
                Problem(
                    f"subscriptions[{s}].plan",
                    f"currency mismatch: plan {sub_plan.key!r} bills in {sub_plan.currency}, "
                    f"tenant {tenant.id!r} pays in {tenant.currency}",
                )
            )
    for t, tenant in enumerate(catalog.tenants):
        if tenant.tax_rate >= 1:
            problems.append(
                Problem(f"tenants[{t}].tax_rate", f"{tenant.tax_rate} is not a rate in [0, 1)")
            )
    for p, plan in enumerate(catalog.plans):
        if plan.minimum_commitment is not None:
            problems.extend(
                check_amount(
                    f"plans[{p}].minimum_commitment", plan.minimum_commitment, plan.currency
                )
            )
    for d, discount in enumerate(catalog.discounts):
        problems.extend(_check_discount(f"discounts[{d}]", discount, catalog, tenants))
    for g, grant in enumerate(catalog.credit_grants):
        tenant = tenants.get(grant.tenant_id)
        if tenant is None:
            problems.append(
                Problem(f"credit_grants[{g}].tenant_id", f"unknown tenant {grant.tenant_id!r}")
            )
            continue
        problems.extend(
            Problem(f"credit_grants[{g}].{problem.path}", problem.message)
            for problem in check_grant(grant, tenant.currency)
        )
    return problems


def check_amount(path: str, amount: Decimal, currency: str) -> list[Problem]:
    """An amount of money billed as it is: positive, in the currency's minor units, below
    MAX_AMOUNT (its minor units fit the marts' bigint with room for sums)."""
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)
    if amount <= 0:
        return [Problem(path, f"{amount} is not a positive amount")]
    if amount >= MAX_AMOUNT:
        return [Problem(path, f"{amount} is not below {MAX_AMOUNT:,}")]
    if -exponent > MINOR_UNITS[currency]:
        return [
            Problem(
                path,
                f"{amount} has more decimals than {currency}'s minor unit "
                f"({MINOR_UNITS[currency]})",
            )
        ]
    return []


def _check_discount(
    path: str, discount: Discount, catalog: Catalog, tenants: dict[str, Tenant]
) -> list[Problem]:
    problems: list[Problem] = []
    tenant = tenants.get(discount.tenant_id)
    if tenant is None:
        problems.append(Problem(f"{path}.tenant_id", f"unknown tenant {discount.tenant_id!r}"))
    if (discount.rate is None) == (discount.amount is None):
        problems.append(
            Problem(path, 'needs a rate ("0.2" is 20% off) or an amount ("50.00" off), not both')
        )
    if discount.rate is not None and not 0 < discount.rate <= 1:
        problems.append(
            Problem(
                f"{path}.rate",
                f'{discount.rate} is not a rate in (0, 1] (a fraction: "0.2" is 20% off)',
            )
        )
    if discount.amount is not None and tenant is not None:
        problems.extend(check_amount(f"{path}.amount", discount.amount, tenant.currency))
    charges = {m.key for m in catalog.metrics} | {BASE_FEE}
    for index, name in enumerate(discount.applies_to):
        if name not in charges:
            problems.append(
                Problem(
                    f"{path}.applies_to[{index}]",
                    f"unknown charge {name!r}: a metric's key or {BASE_FEE}",
                )
            )
    for index, name in _duplicates(discount.applies_to).items():
        problems.append(Problem(f"{path}.applies_to[{index}]", f"duplicate {name!r}"))
    return problems


def check_grant(grant: CreditGrant, tenant_currency: str) -> list[Problem]:
    """A grant's own rules, paths relative to it: the catalog and the admin API use them."""
    problems: list[Problem] = []
    currency = grant.currency or tenant_currency
    if currency != tenant_currency:
        problems.append(
            Problem(
                "currency",
                f"{currency} is not the tenant's currency ({tenant_currency}): its invoices "
                "could not use it",
            )
        )
    else:
        problems.extend(check_amount("amount", grant.amount, currency))
    if grant.expires_at is not None and grant.expires_at <= grant.granted_at:
        problems.append(Problem("expires_at", "must be after granted_at"))
    return problems


def _check_charge(path: str, charge: Charge, metrics: dict[str, Metric]) -> list[Problem]:
    problems: list[Problem] = []
    metric = metrics.get(charge.metric)
    if metric is None:
        known = ", ".join(sorted(metrics)) or "none"
        problems.append(
            Problem(f"{path}.metric", f"unknown metric {charge.metric!r} (known: {known})")
        )
    for index, name in _duplicates(charge.group_by).items():
        problems.append(Problem(f"{path}.group_by[{index}]", f"duplicate {name!r}"))
    if metric is not None:
        for index, name in enumerate(charge.group_by):
            if name not in metric.dimensions:
                known = ", ".join(metric.dimensions) or "none"
                problems.append(
                    Problem(
                        f"{path}.group_by[{index}]",
                        f"unknown property {name!r}: not a dimension of metric "
                        f"{metric.key!r} (its dimensions: {known})",
                    )
                )
    if charge.model is None:
        problems.append(
            Problem(
                f"{path}.model",
                "required: the default price of the values no price lists (a pricing model, "
                "or not_billed)"
                if charge.group_by
                else "required",
            )
        )
    elif charge.model == "not_billed" and not charge.group_by:
        problems.append(
            Problem(f"{path}.model", "not_billed is the default of a charge with group_by only")
        )
    else:
        problems.extend(_check_pricing(path, charge))
    if metric is not None and (metric.aggregation != "sum" or metric.allow_negative):
        for where, pricing in [(path, charge)] + [
            (f"{path}.prices[{p}]", price) for p, price in enumerate(charge.prices)
        ]:
            if pricing.model == "percentage":
                problems.append(
                    Problem(
                        f"{where}.model",
                        f"percentage prices the summed amounts of a sum metric without "
                        f"negative amounts; {metric.key!r} is {metric.aggregation}"
                        + (" with allow_negative" if metric.allow_negative else ""),
                    )
                )
    if charge.prices and not charge.group_by:
        problems.append(Problem(f"{path}.prices", "prices by dimension need group_by"))
    if charge.group_by and not charge.prices:
        problems.append(Problem(f"{path}.prices", "group_by needs prices (at least one)"))
    seen: dict[str, int] = {}
    for p, price in enumerate(charge.prices):
        price_path = f"{path}.prices[{p}]"
        if set(price.when) != set(charge.group_by):
            for name in sorted(set(price.when) - set(charge.group_by)):
                problems.append(
                    Problem(
                        f"{price_path}.when.{name}",
                        f"unknown property {name!r}: the charge groups by "
                        f"{', '.join(charge.group_by) or 'nothing'}",
                    )
                )
            for name in sorted(set(charge.group_by) - set(price.when)):
                problems.append(
                    Problem(f"{price_path}.when", f"needs a value for {name!r} (group_by)")
                )
            continue
        key = dimension_key(charge.group_by, price.when)
        if key in seen:
            problems.append(
                Problem(
                    f"{price_path}.when",
                    f"duplicate combination {key} (also prices[{seen[key]}])",
                )
            )
        seen.setdefault(key, p)
        if price.model is None:
            problems.append(Problem(f"{price_path}.model", "required"))
        else:
            problems.extend(_check_pricing(price_path, price))
    return problems


# the fields of each pricing model: those it needs, and those it may have
PERCENTAGE_FIELDS = (
    "rate",
    "fixed_fee",
    "min_per_event",
    "max_per_event",
    "free_units",
    "free_amount",
)
PRICING_FIELDS = ("unit_price", "package_size", "package_price", "tiers", *PERCENTAGE_FIELDS)
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "per_unit": ("unit_price",),
    "package": ("package_size", "package_price"),
    "graduated": ("tiers",),
    "volume": ("tiers",),
    "percentage": ("rate",),
    "not_billed": (),
}
MODEL_FIELDS: dict[str, tuple[str, ...]] = {**REQUIRED_FIELDS, "percentage": PERCENTAGE_FIELDS}


def _check_pricing(path: str, pricing: Pricing) -> list[Problem]:
    problems: list[Problem] = []
    assert pricing.model is not None
    for name in PRICING_FIELDS:
        present = getattr(pricing, name) is not None
        if name in REQUIRED_FIELDS[pricing.model] and not present:
            problems.append(Problem(f"{path}.{name}", f"required by model {pricing.model}"))
        if name not in MODEL_FIELDS[pricing.model] and present:
            problems.append(Problem(f"{path}.{name}", f"not used by model {pricing.model}"))
    if pricing.model in ("not_billed", "percentage") and pricing.included:
        problems.append(
            Problem(
                f"{path}.included",
                f"not used by model {pricing.model}"
                + (" (free_units or free_amount)" if pricing.model == "percentage" else ""),
            )
        )
    if pricing.free_units is not None and pricing.free_amount is not None:
        problems.append(Problem(f"{path}.free_amount", "free_units or free_amount, not both"))
    if pricing.rate is not None and pricing.rate > 1:
        problems.append(
            Problem(
                f"{path}.rate",
                f'{pricing.rate} is not a rate in [0, 1] (a fraction: "0.029" is 2.9%)',
            )
        )
    if (
        pricing.min_per_event is not None
        and pricing.max_per_event is not None
        and pricing.min_per_event > pricing.max_per_event
    ):
        problems.append(
            Problem(
                f"{path}.max_per_event",
                f"{pricing.max_per_event} is below min_per_event {pricing.min_per_event}",
            )
        )
    if pricing.tiers is not None:
        if not pricing.tiers:
            problems.append(Problem(f"{path}.tiers", "needs at least one tier"))
        previous: Decimal | None = None
        for t, tier in enumerate(pricing.tiers):
            last = t == len(pricing.tiers) - 1
            if tier.up_to is None and not last:
                problems.append(
                    Problem(f"{path}.tiers[{t}].up_to", "only the last tier may be open (null)")
                )
            if tier.up_to is not None and last:
                problems.append(
                    Problem(
                        f"{path}.tiers[{t}].up_to",
                        "the last tier must be open (up_to: null) so every quantity is priced",
                    )
                )
            if tier.up_to is not None and previous is not None and tier.up_to <= previous:
                problems.append(
                    Problem(
                        f"{path}.tiers[{t}].up_to",
                        f"tier bounds must increase: {tier.up_to} is not above {previous}",
                    )
                )
            if tier.up_to is not None:
                previous = tier.up_to
    return problems


def load_catalog_file(path: Path) -> Catalog:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(str(path), [Problem("(file)", f"cannot read: {exc}")]) from None
    return parse_catalog(text, str(path))


@dataclass
class ApplyResult:
    apply_id: int
    metrics: int
    plan_versions_added: list[str]
    plans_unchanged: list[str]
    tenants: int
    subscriptions_started: list[str]

    def summary(self) -> str:
        added = ", ".join(self.plan_versions_added) or "none"
        return (
            f"catalog applied (#{self.apply_id}): {self.metrics} metrics; new plan versions: "
            f"{added}; {len(self.plans_unchanged)} plans unchanged; {self.tenants} tenants; "
            f"{len(self.subscriptions_started)} subscriptions started"
        )


# Plan keys added after the first release, with their defaults: left out of a plan's content
# while at them, so that a catalog written before them keeps its versions when applied again.
LATER_PLAN_DEFAULTS: dict[str, Any] = {
    "trial_days": 0,
    "trial_bills_usage": False,
    "minimum_commitment": None,
}
LATER_CHARGE_DEFAULTS: dict[str, Any] = {
    "group_by": [],
    "prices": [],
    **dict.fromkeys(PERCENTAGE_FIELDS),
}


def _without(content: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in content.items()
        if key not in defaults or value != defaults[key]
    }


def _plan_sha(plan: Plan) -> str:
    content = _without(plan.model_dump(mode="json"), LATER_PLAN_DEFAULTS)
    content["charges"] = [
        _without(
            {**c, "prices": [_without(p, LATER_CHARGE_DEFAULTS) for p in c["prices"]]},
            LATER_CHARGE_DEFAULTS,
        )
        for c in content["charges"]
    ]
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# The tables a catalog writes, analyzed as it is applied: a few rows each, which autovacuum
# would analyze only after 50 changes, and the planner guesses without statistics (490 rows
# for five metrics): at 10M events the partials then sorted every event by metric to merge
# them with the metrics (57 s, against 39 s with them). One state for every warehouse.
CATALOG_TABLES = (
    "app.metrics",
    "app.plan_versions",
    "app.plan_charges",
    "app.plan_prices",
    "app.plan_tiers",
    "app.tenants",
    "app.discounts",
    "app.credit_grants",
    "raw.subscription_events",
)


def apply_catalog(conn: psycopg.Connection, catalog: Catalog, source: str) -> ApplyResult:
    """Load a validated catalog in one transaction, keeping every past plan version."""
    sha = hashlib.sha256(
        json.dumps(catalog.model_dump(mode="json"), sort_keys=True).encode()
    ).hexdigest()
    with conn.transaction():
        conn.execute("lock table app.plan_versions in share row exclusive mode")
        problems = _check_against_warehouse(conn, catalog)
        if problems:
            raise CatalogError(source, problems)
        row = conn.execute(
            "insert into app.catalog_applies (source, sha256) values (%s, %s) returning apply_id",
            (source, sha),
        ).fetchone()
        assert row is not None
        apply_id = int(row[0])
        with conn.cursor() as cur:
            cur.executemany(
                """insert into app.metrics (metric_key, aggregation, property, allow_negative,
                                            dimensions, apply_id)
                   values (%s, %s, %s, %s, %s, %s)
                   on conflict (metric_key) do update set
                       aggregation = excluded.aggregation, property = excluded.property,
                       allow_negative = excluded.allow_negative,
                       dimensions = excluded.dimensions, apply_id = excluded.apply_id""",
                [
                    (
                        m.key,
                        m.aggregation,
                        m.property,
                        m.allow_negative,
                        json.dumps(m.dimensions) if m.dimensions else None,
                        apply_id,
                    )
                    for m in catalog.metrics
                ],
            )
        added, unchanged = [], []
        for plan in catalog.plans:
            if _insert_plan_version(conn, plan, apply_id):
                added.append(plan.key)
            else:
                unchanged.append(plan.key)
        with conn.cursor() as cur:
            cur.executemany(
                """insert into app.tenants (tenant_id, name, currency, tax_rate,
                                            stripe_customer_id, apply_id)
                   values (%s, %s, %s, %s, %s, %s)
                   on conflict (tenant_id) do update set
                       name = excluded.name, currency = excluded.currency,
                       tax_rate = excluded.tax_rate,
                       stripe_customer_id = excluded.stripe_customer_id,
                       apply_id = excluded.apply_id""",
                [
                    (t.id, t.name, t.currency, t.tax_rate, t.stripe_customer_id, apply_id)
                    for t in catalog.tenants
                ],
            )
        # every start through the one state machine the API uses (one subscription per
        # tenant at a time); a subscription already started is the history's, not the file's
        # (its entry names the start recorded: _check_against_warehouse)
        started, problems = [], []
        known = {
            r[0]
            for r in conn.execute("select distinct subscription_id from raw.subscription_events")
        }
        for s, sub in enumerate(catalog.subscriptions):
            if sub.id in known:
                continue
            try:
                start(conn, sub.tenant_id, sub.plan, sub.start, sub.id, source="catalog")
            except SubscriptionError as exc:
                problems.append(Problem(f"subscriptions[{s}].{exc.field}", str(exc)))
                continue
            started.append(sub.id)
        currencies = {t.id: t.currency for t in catalog.tenants}
        for d, discount in enumerate(catalog.discounts):
            try:
                record_discount(conn, discount, currencies[discount.tenant_id], apply_id)
            except RecordConflict as exc:
                problems.append(Problem(f"discounts[{d}].{exc.field}", str(exc)))
        for g, grant in enumerate(catalog.credit_grants):
            try:
                record_grant(conn, grant, currencies[grant.tenant_id], source="catalog")
            except RecordConflict as exc:
                problems.append(Problem(f"credit_grants[{g}].{exc.field}", str(exc)))
        if problems:
            raise CatalogError(source, problems)
        for table in CATALOG_TABLES:
            conn.execute(sql.SQL("analyze {}").format(sql.Identifier(*table.split("."))))
    return ApplyResult(
        apply_id=apply_id,
        metrics=len(catalog.metrics),
        plan_versions_added=added,
        plans_unchanged=unchanged,
        tenants=len(catalog.tenants),
        subscriptions_started=started,
    )


def _check_against_warehouse(conn: psycopg.Connection, catalog: Catalog) -> list[Problem]:
    """Rules that need what is already loaded: a started subscription's entry names its
    tenant, plan and start as recorded, a tenant keeps its currency while a subscription
    runs, and a metric finalized invoices billed keeps its definition
    (_billed_metrics_kept)."""
    problems = _billed_metrics_kept(conn, catalog)
    currencies: dict[str, str] = dict(
        conn.execute("select tenant_id, currency from app.tenants").fetchall()
    )
    now = conn.execute("select now()").fetchone()[0]  # type: ignore[index]
    for t, tenant in enumerate(catalog.tenants):
        before = currencies.get(tenant.id, tenant.currency)
        other = running(conn, tenant.id, now) if before != tenant.currency else None
        if other is not None:
            problems.append(
                Problem(
                    f"tenants[{t}].currency",
                    f"tenant {tenant.id!r} pays in {before} for subscription "
                    f"{other.subscription_id!r} (plan {other.plan!r}): its currency changes "
                    "once no subscription runs (cancel it first)",
                )
            )
    # a subscription already started keeps its entry: tenant, plan and start as recorded
    # (as a discount's or a grant's, never edited)
    starts: dict[str, tuple[str, str, datetime]] = {
        r[0]: (r[1], r[2], r[3])
        for r in conn.execute(
            "select subscription_id, tenant_id, plan_key, effective_at "
            "from raw.subscription_events where action = 'start'"
        )
    }
    for s, sub in enumerate(catalog.subscriptions):
        if sub.id not in starts:
            continue
        owner, plan, started = starts[sub.id]
        if owner != sub.tenant_id:
            problems.append(
                Problem(
                    f"subscriptions[{s}].tenant_id",
                    f"subscription {sub.id!r} already belongs to tenant {owner!r}",
                )
            )
        entry: tuple[tuple[str, Any, Any], ...] = (
            ("plan", plan, sub.plan),
            ("start", started, sub.start),
        )
        for name, recorded, given in entry:
            if recorded != given:
                problems.append(
                    Problem(
                        f"subscriptions[{s}].{name}",
                        f"subscription {sub.id!r} was recorded with {name} "
                        f"{_shown(recorded)}, not {_shown(given)}: its start is never "
                        "edited (the API's change-plan and cancel change it)",
                    )
                )
    return problems


def _billed_metrics_kept(conn: psycopg.Connection, catalog: Catalog) -> list[Problem]:
    """What makes a metric's quantity (its aggregation, property and dimensions) cannot
    change once a finalized invoice billed the metric: metrics are not versioned, so a late
    event for a closed month would re-price the whole month by the new definition and bill
    the difference as an adjustment (DECISIONLOG.md, "Catalog history")."""
    stored = {
        key: (aggregation, prop, json.loads(dimensions) if dimensions else [], month)
        for key, aggregation, prop, dimensions, month in conn.execute(
            """select m.metric_key, m.aggregation, m.property, m.dimensions,
                      max(l.period_start)
               from app.metrics m
               join app.finalized_invoice_lines l on l.metric = m.metric_key
               group by 1, 2, 3, 4"""
        )
    }
    problems = []
    for i, metric in enumerate(catalog.metrics):
        if metric.key not in stored:
            continue
        *before, month = stored[metric.key]
        now = (metric.aggregation, metric.property, list(metric.dimensions))
        names = ("aggregation", "property", "dimensions")
        for name, old, new in zip(names, before, now, strict=True):
            if old != new:
                problems.append(
                    Problem(
                        f"metrics[{i}].{name}",
                        f"metric {metric.key!r} is billed with {name} {old!r} on finalized "
                        f"invoices (the latest of {month:%Y-%m}): it cannot become {new!r}, "
                        "or late usage would re-price those months; add a metric with a "
                        "new key instead",
                    )
                )
    return problems


def _insert_plan_version(conn: psycopg.Connection, plan: Plan, apply_id: int) -> bool:
    """Insert a new version of ``plan`` if its content changed; return whether it did."""
    sha = _plan_sha(plan)
    latest = conn.execute(
        "select version, content_sha256 from app.plan_versions where plan_key = %s "
        "order by version desc limit 1",
        (plan.key,),
    ).fetchone()
    if latest is not None and latest[1] == sha:
        return False
    version = 1 if latest is None else int(latest[0]) + 1
    conn.execute(
        """insert into app.plan_versions (plan_key, version, name, billing_interval, currency,
                                          base_price, trial_days, trial_bills_usage,
                                          minimum_commitment, effective_from, content_sha256,
                                          apply_id)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s,
                   case when %s = 1 then '-infinity'::timestamptz else now() end, %s, %s)""",
        (
            plan.key,
            version,
            plan.name,
            plan.interval,
            plan.currency,
            plan.base_price,
            plan.trial_days,
            plan.trial_bills_usage,
            plan.minimum_commitment,
            version,
            sha,
            apply_id,
        ),
    )
    for charge in plan.charges:
        conn.execute(
            sql.SQL(
                """insert into app.plan_charges (plan_key, version, metric, {columns},
                       quota_limit, quota_policy, group_by)
                   values (%s, %s, %s, {values}, %s, %s, %s)"""
            ).format(**_pricing_sql()),
            (
                plan.key,
                version,
                charge.metric,
                *_pricing_row(charge),
                charge.quota.limit if charge.quota else None,
                charge.quota.policy if charge.quota else None,
                json.dumps(charge.group_by) if charge.group_by else None,
            ),
        )
        _insert_tiers(conn, plan.key, version, charge.metric, "", charge.tiers)
        for price in charge.prices:
            key = dimension_key(charge.group_by, price.when)
            conn.execute(
                sql.SQL(
                    """insert into app.plan_prices (plan_key, version, metric, dimensions,
                           {columns})
                       values (%s, %s, %s, %s, {values})"""
                ).format(**_pricing_sql()),
                (plan.key, version, charge.metric, key, *_pricing_row(price)),
            )
            _insert_tiers(conn, plan.key, version, charge.metric, key, price.tiers)
    return True


# a price's columns in app.plan_charges and app.plan_prices (its tiers apart)
PRICING_COLUMNS = ("model", "included", *(f for f in PRICING_FIELDS if f != "tiers"))


def _pricing_sql() -> dict[str, sql.Composable]:
    return {
        "columns": sql.SQL(", ").join(map(sql.Identifier, PRICING_COLUMNS)),
        "values": sql.SQL(", ").join(sql.Placeholder() for _ in PRICING_COLUMNS),
    }


def _pricing_row(pricing: Pricing) -> tuple[Any, ...]:
    return tuple(getattr(pricing, column) for column in PRICING_COLUMNS)


def _insert_tiers(
    conn: psycopg.Connection,
    plan_key: str,
    version: int,
    metric: str,
    dimensions: str,
    tiers: list[Tier] | None,
) -> None:
    """The tiers of a charge's default price (dimensions '') or of one combination's."""
    for index, tier in enumerate(tiers or []):
        conn.execute(
            """insert into app.plan_tiers (plan_key, version, metric, dimensions, tier_index,
                                           up_to, unit_price, flat_fee)
               values (%s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                plan_key,
                version,
                metric,
                dimensions,
                index,
                tier.up_to,
                tier.unit_price,
                tier.flat_fee,
            ),
        )


class RecordConflict(ValueError):
    """A discount or grant id recorded before with other terms: records are never edited."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _record_once(
    conn: psycopg.Connection,
    what: str,
    table: str,
    key: tuple[str, str],
    terms: dict[str, Any],
    extra: dict[str, Any],
) -> bool:
    """Insert a record unless its id is there; the same terms again are no change, other
    terms a RecordConflict naming the first field that differs. Returns whether inserted."""
    row = {key[0]: key[1], **terms, **extra}
    inserted = conn.execute(
        sql.SQL(
            "insert into app.{table} ({columns}) values ({values}) "
            "on conflict ({key}) do nothing returning 1"
        ).format(
            table=sql.Identifier(table),
            columns=sql.SQL(", ").join(map(sql.Identifier, row)),
            values=sql.SQL(", ").join(sql.Placeholder() for _ in row),
            key=sql.Identifier(key[0]),
        ),
        [Jsonb(v) if isinstance(v, list) else v for v in row.values()],
    ).fetchone()
    if inserted:
        return True
    stored = conn.execute(
        sql.SQL("select {columns} from app.{table} where {key} = %s").format(
            columns=sql.SQL(", ").join(map(sql.Identifier, terms)),
            table=sql.Identifier(table),
            key=sql.Identifier(key[0]),
        ),
        (key[1],),
    ).fetchone()
    assert stored is not None
    for (name, value), before in zip(terms.items(), stored, strict=True):
        if value != before:
            raise RecordConflict(
                name,
                f"{what} {key[1]!r} was recorded with {name} {_shown(before)}, not "
                f"{_shown(value)}: a {what} is never edited (give a new one another id)",
            )
    return False


def _shown(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return "none" if value is None else str(value)


def record_discount(
    conn: psycopg.Connection, discount: Discount, currency: str, apply_id: int | None = None
) -> bool:
    """Record a discount once (app.discounts); return whether it is new."""
    year, month = (int(part) for part in discount.starts.split("-"))
    return _record_once(
        conn,
        "discount",
        "discounts",
        ("discount_id", discount.id),
        {
            "tenant_id": discount.tenant_id,
            "description": discount.description or f"Discount {discount.id}",
            "rate": discount.rate,
            "amount": discount.amount,
            "currency": currency,
            "starts": datetime(year, month, 1, tzinfo=UTC),
            "months": discount.months,
            "applies_to": discount.applies_to or None,
        },
        {"apply_id": apply_id},
    )


def record_grant(
    conn: psycopg.Connection, grant: CreditGrant, currency: str, *, source: str
) -> bool:
    """Record a credit grant once (app.credit_grants); return whether it is new."""
    return _record_once(
        conn,
        "credit grant",
        "credit_grants",
        ("grant_id", grant.id),
        {
            "tenant_id": grant.tenant_id,
            "amount": grant.amount,
            "currency": grant.currency or currency,
            "granted_at": grant.granted_at,
            "expires_at": grant.expires_at,
            "priority": grant.priority,
            "description": grant.description,
        },
        {"source": source},
    )


def void_grant(conn: psycopg.Connection, grant_id: str, reason: str, *, source: str) -> bool:
    """Void a credit grant (a record of its own): what is left of it is no longer used.
    Returns whether it was voided now (False: voided before); KeyError if there is none."""
    if (
        conn.execute("select 1 from app.credit_grants where grant_id = %s", (grant_id,)).fetchone()
        is None
    ):
        raise KeyError(grant_id)
    voided = conn.execute(
        """insert into app.credit_grant_voids (grant_id, reason, source) values (%s, %s, %s)
           on conflict (grant_id) do nothing returning 1""",
        (grant_id, reason, source),
    ).fetchone()
    return voided is not None
