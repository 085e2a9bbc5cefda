"""`billing catalog apply`: every invalid catalog exits 2, names file, path and problem, and
writes nothing; a valid one loads, and re-applying a change keeps the old plan version."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from billing.cli import main
from tests.helpers import REPO

DEMO = REPO / "examples" / "demo_catalog.yaml"
Doc = dict[str, Any]


def demo_doc() -> Doc:
    return yaml.safe_load(DEMO.read_text())  # type: ignore[no-any-return]


def mutate(fn: Callable[[Doc], None]) -> Callable[[], str]:
    def build() -> str:
        doc = copy.deepcopy(demo_doc())
        fn(doc)
        return yaml.safe_dump(doc, sort_keys=False)

    return build


def raw(text: str) -> Callable[[], str]:
    return lambda: text


def _set(path: list[Any], value: Any) -> Callable[[Doc], None]:
    def fn(doc: Doc) -> None:
        node = doc
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return fn


def _add(section: str, item: Doc) -> Callable[[Doc], None]:
    def fn(doc: Doc) -> None:
        doc.setdefault(section, []).append(item)

    return fn


GRANT: Doc = {
    "id": "g1",
    "tenant_id": "acme",
    "amount": "5.00",
    "granted_at": "2026-10-01T00:00:00Z",
}
DISCOUNT: Doc = {"id": "d1", "tenant_id": "acme", "rate": "0.1", "starts": "2026-10"}

BAD_CATALOGS: dict[str, tuple[Callable[[], str], str, str]] = {
    # name: (document, path inside it, problem)
    # commitments, discounts and credits
    "a minimum commitment finer than the currency": (
        mutate(_set(["plans", 3, "minimum_commitment"], "1000.5")),
        "plans[3].minimum_commitment",
        "1000.5 has more decimals than jpy's minor unit (0)",
    ),
    "a discount with a rate and an amount": (
        mutate(_add("discounts", {**DISCOUNT, "amount": "5.00"})),
        "discounts[1]",
        'needs a rate ("0.2" is 20% off) or an amount ("50.00" off), not both',
    ),
    "a discount rate in percent": (
        mutate(_add("discounts", {**DISCOUNT, "rate": "20"})),
        "discounts[1].rate",
        '20 is not a rate in (0, 1] (a fraction: "0.2" is 20% off)',
    ),
    "a discount on an unknown charge": (
        mutate(_add("discounts", {**DISCOUNT, "applies_to": ["api_calls", "nope"]})),
        "discounts[1].applies_to[1]",
        "unknown charge 'nope': a metric's key or base_fee",
    ),
    "a discount amount finer than the currency": (
        mutate(
            _add("discounts", {**DISCOUNT, "tenant_id": "umbrella", "rate": None, "amount": "5.5"})
        ),
        "discounts[1].amount",
        "5.5 has more decimals than jpy's minor unit (0)",
    ),
    "a discount starting on a day": (
        mutate(_add("discounts", {**DISCOUNT, "starts": "2026-10-01"})),
        "discounts[1].starts",
        "does not match",
    ),
    "a grant in another currency than the tenant's": (
        mutate(_add("credit_grants", {**GRANT, "currency": "eur"})),
        "credit_grants[1].currency",
        "eur is not the tenant's currency (usd)",
    ),
    "a grant expiring when it is granted": (
        mutate(_add("credit_grants", {**GRANT, "expires_at": "2026-10-01T00:00:00Z"})),
        "credit_grants[1].expires_at",
        "must be after granted_at",
    ),
    "a grant for an unknown tenant": (
        mutate(_add("credit_grants", {**GRANT, "tenant_id": "nobody"})),
        "credit_grants[1].tenant_id",
        "unknown tenant 'nobody'",
    ),
    # pricing by dimension: the demo's tokens charge (plans[4]) groups by model and direction
    "group_by a property the metric lacks": (
        mutate(_set(["plans", 4, "charges", 0, "group_by"], ["model", "region"])),
        "plans[4].charges[0].group_by[1]",
        "unknown property 'region': not a dimension of metric 'tokens'",
    ),
    "a combination priced twice": (
        mutate(
            lambda d: d["plans"][4]["charges"][0]["prices"].append(
                {"when": {"direction": "input", "model": "large"}, "model": "not_billed"}
            )
        ),
        "plans[4].charges[0].prices[3].when",
        'duplicate combination {"model":"large","direction":"input"} (also prices[0])',
    ),
    "a charge by dimension without a default": (
        mutate(lambda d: [d["plans"][4]["charges"][0].pop(k) for k in ("model", "unit_price")]),
        "plans[4].charges[0].model",
        "required: the default price of the values no price lists",
    ),
    "a price missing a value": (
        mutate(lambda d: d["plans"][4]["charges"][0]["prices"][1]["when"].pop("direction")),
        "plans[4].charges[0].prices[1].when",
        "needs a value for 'direction'",
    ),
    "dimensions of a unique_count metric": (
        mutate(_set(["metrics", 1, "dimensions"], ["team"])),
        "metrics[1].dimensions",
        "a unique_count metric has no dimensions",
    ),
    # percentage charges
    "percentage without a rate": (
        mutate(
            lambda d: d["plans"][0]["charges"][0].update(
                {"model": "percentage", "unit_price": None, "included": 0}
            )
        ),
        "plans[0].charges[0].rate",
        "required by model percentage",
    ),
    "percentage of a max metric": (
        mutate(
            lambda d: d["plans"][1]["charges"].__setitem__(
                1, {"metric": "storage_gb", "model": "percentage", "rate": "0.01"}
            )
        ),
        "plans[1].charges[1].model",
        "percentage prices the summed amounts of a sum metric without negative amounts; "
        "'storage_gb' is max",
    ),
    "free units and a free amount": (
        mutate(
            lambda d: d["plans"][0]["charges"].__setitem__(
                0,
                {
                    "metric": "api_calls",
                    "model": "percentage",
                    "rate": "0.02",
                    "free_units": 3,
                    "free_amount": "10",
                },
            )
        ),
        "plans[0].charges[0].free_amount",
        "free_units or free_amount, not both",
    ),
    "negative trial": (
        mutate(_set(["plans", 0, "trial_days"], -3)),
        "plans[0].trial_days",
        "greater than or equal to 0",
    ),
    "trial of days as text": (
        mutate(_set(["plans", 0, "trial_days"], "14")),
        "plans[0].trial_days",
        "valid integer",
    ),
    "trial usage not a boolean": (
        mutate(_set(["plans", 0, "trial_bills_usage"], "yes please")),
        "plans[0].trial_bills_usage",
        "valid boolean",
    ),
    "unknown model": (
        mutate(_set(["plans", 1, "charges", 0, "model"], "tiered")),
        "plans[1].charges[0].model",
        "'per_unit', 'package', 'graduated', 'volume', 'percentage' or 'not_billed'",
    ),
    "tier bounds not increasing": (
        mutate(_set(["plans", 1, "charges", 3, "tiers", 1, "up_to"], 10)),
        "plans[1].charges[3].tiers[1].up_to",
        "tier bounds must increase: 10 is not above 10",
    ),
    "currency mismatch": (
        mutate(_set(["subscriptions", 0, "plan"], "scale_eu")),
        "subscriptions[0].plan",
        "currency mismatch: plan 'scale_eu' bills in eur, tenant 'acme' pays in usd",
    ),
    "bad decimal": (
        mutate(_set(["plans", 0, "base_price"], "19,00")),
        "plans[0].base_price",
        "'19,00' is not a decimal number",
    ),
    "float price": (
        mutate(_set(["plans", 0, "charges", 0, "unit_price"], 0.001)),
        "plans[0].charges[0].unit_price",
        "must be a decimal string",
    ),
    "too many decimals": (
        mutate(_set(["plans", 0, "charges", 0, "unit_price"], "0.0000000000001")),
        "plans[0].charges[0].unit_price",
        "more than 12 decimal places",
    ),
    "negative price": (
        mutate(_set(["plans", 0, "base_price"], "-1")),
        "plans[0].base_price",
        "negative",
    ),
    # a price no run could bill: the month's invoices of every tenant failed on it
    "a price too large to bill": (
        mutate(_set(["plans", 0, "base_price"], "1e400")),
        "plans[0].base_price",
        "'1e400' is not below 10,000,000,000, the largest price billed",
    ),
    "a tier's price too large to bill": (
        mutate(_set(["plans", 1, "charges", 3, "tiers", 0, "unit_price"], "10000000000")),
        "plans[1].charges[3].tiers[0].unit_price",
        "is not below 10,000,000,000",
    ),
    "duplicate metric key": (
        mutate(lambda d: d["metrics"].append({"key": "api_calls", "aggregation": "count"})),
        "metrics[6]",
        "duplicate key 'api_calls'",
    ),
    "duplicate yaml key": (
        raw("metrics: []\nplans: []\nmetrics: []\n"),
        "line 3, column 1",
        "duplicate key 'metrics' (first on line 1)",
    ),
    "unknown metric": (
        mutate(_set(["plans", 0, "charges", 0, "metric"], "api_call")),
        "plans[0].charges[0].metric",
        "unknown metric 'api_call'",
    ),
    "unknown currency": (
        mutate(_set(["tenants", 0, "currency"], "usdd")),
        "tenants[0].currency",
        "'usdd' is not a supported ISO 4217 code",
    ),
    "timestamp without offset": (
        mutate(_set(["subscriptions", 0, "start"], "2026-01-01T00:00:00")),
        "subscriptions[0].start",
        "has no UTC offset",
    ),
    "timestamp in 1 BC in UTC": (
        mutate(_set(["subscriptions", 0, "start"], "0001-01-01T00:00:00+05:00")),
        "subscriptions[0].start",
        "out of range in UTC",
    ),
    "subscription past the calendar": (
        mutate(_set(["subscriptions", 0, "start"], "9999-06-01T00:00:00Z")),
        "subscriptions[0].start",
        "is not before 9998-01-01",
    ),
    "misspelt field": (
        mutate(_set(["plans", 0, "charges", 0, "unit_prcie"], "1")),
        "plans[0].charges[0].unit_prcie",
        "unknown field",
    ),
    "open tier not last": (
        mutate(_set(["plans", 1, "charges", 1, "tiers", 0, "up_to"], None)),
        "plans[1].charges[1].tiers[0].up_to",
        "only the last tier may be open",
    ),
    "unique_count without property": (
        mutate(lambda d: d["metrics"][1].pop("property")),
        "metrics[1].property",
        "unique_count needs the metadata key",
    ),
    "missing field": (
        mutate(lambda d: d["plans"][0].pop("interval")),
        "plans[0].interval",
        "Field required",
    ),
    "tenant id with a quote": (
        mutate(_set(["tenants", 0, "id"], "acme'; drop table x")),
        "tenants[0].id",
        "does not match",
    ),
    "unknown tenant in subscription": (
        mutate(_set(["subscriptions", 0, "tenant_id"], "nobody")),
        "subscriptions[0].tenant_id",
        "unknown tenant 'nobody'",
    ),
    "per_unit without unit_price": (
        mutate(lambda d: d["plans"][0]["charges"][0].pop("unit_price")),
        "plans[0].charges[0].unit_price",
        "required by model per_unit",
    ),
    "malformed yaml": (
        raw("metrics: [\n"),
        "line 2, column 1",
        "expected the node content, but found '<stream end>'",
    ),
}


def _counts(url: str) -> tuple[int, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """select (select count(*) from app.catalog_applies),
                      (select count(*) from app.metrics),
                      (select count(*) from app.plan_versions),
                      (select count(*) from app.tenants),
                      (select count(*) from raw.subscription_events)"""
        ).fetchone()
    assert row is not None
    return tuple(row)


def apply(path: Path) -> Any:
    return CliRunner().invoke(main, ["catalog", "apply", str(path)])


@pytest.mark.parametrize("name", sorted(BAD_CATALOGS))
def test_invalid_catalog_exits_2_names_the_problem_and_writes_nothing(
    name: str, warehouse: str, tmp_path: Path
) -> None:
    assert CliRunner().invoke(main, ["db", "up"]).exit_code == 0
    build, path_inside, problem = BAD_CATALOGS[name]
    file = tmp_path / "bad catalog.yaml"
    file.write_text(build())
    result = apply(file)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())  # rich may wrap long lines
    assert f"{file}: {path_inside}: " in message
    assert problem in message
    assert _counts(warehouse) == (0, 0, 0, 0, 0)


def test_missing_file_exits_2(warehouse: str, tmp_path: Path) -> None:
    result = apply(tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert "nope.yaml" in result.output and "cannot read" in result.output


def test_valid_catalog_loads_and_reapplying_keeps_history(warehouse: str, tmp_path: Path) -> None:
    result = apply(DEMO)
    assert result.exit_code == 0, result.output
    assert _counts(warehouse) == (1, 6, 5, 5, 5)

    again = apply(DEMO)
    assert again.exit_code == 0
    assert "new plan versions: none" in again.output
    assert _counts(warehouse) == (2, 6, 5, 5, 5)  # nothing new but the apply record

    doc = demo_doc()
    doc["plans"][1]["base_price"] = "59.00"
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert apply(changed).exit_code == 0
    with psycopg.connect(warehouse) as conn:
        versions = conn.execute(
            """select version, base_price::text, effective_from = '-infinity'
               from app.plan_versions where plan_key = 'pro' order by version"""
        ).fetchall()
    assert versions == [(1, "49.00", True), (2, "59.00", False)]


def test_subscription_cannot_move_to_another_tenant(warehouse: str, tmp_path: Path) -> None:
    assert apply(DEMO).exit_code == 0
    doc = demo_doc()
    doc["subscriptions"][0]["tenant_id"] = "globex"
    moved = tmp_path / "moved.yaml"
    moved.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = apply(moved)
    assert result.exit_code == 2
    assert "subscriptions[0].tenant_id: subscription 'sub_acme' already belongs to tenant" in (
        " ".join(result.output.split())
    )
    assert _counts(warehouse) == (1, 6, 5, 5, 5)


def test_a_started_subscriptions_entry_is_never_edited(warehouse: str, tmp_path: Path) -> None:
    """Before, a catalog moving sub_acme's start or plan applied, said "0 subscriptions
    started" and changed nothing: the edit was lost without a word."""
    assert apply(DEMO).exit_code == 0
    for name, value, shown in (
        ("start", "2026-11-15T00:00:00Z", "start 2026-01-01T00:00:00Z, not 2026-11-15T00:00:00Z"),
        ("plan", "starter", "plan pro, not starter"),
    ):
        doc = demo_doc()
        doc["subscriptions"][0][name] = value
        edited = tmp_path / "edited.yaml"
        edited.write_text(yaml.safe_dump(doc, sort_keys=False))
        result = apply(edited)
        assert result.exit_code == 2, result.output
        assert (
            f"subscriptions[0].{name}: subscription 'sub_acme' was recorded with {shown}: its "
            "start is never edited (the API's change-plan and cancel change it)"
        ) in " ".join(result.output.split())
    assert _counts(warehouse) == (1, 6, 5, 5, 5)
    assert apply(DEMO).exit_code == 0  # the entry as recorded


def test_a_tenant_keeps_its_currency_while_a_subscription_runs(
    warehouse: str, tmp_path: Path
) -> None:
    """Before, a catalog moving acme to eur applied when the file did not list acme's
    subscription (started by the API, or listed elsewhere), and the next run held acme's
    invoice with currency_mismatch. It is refused now, naming the field; once no
    subscription runs, the currency changes."""
    from warehouse.subscriptions import cancel

    assert apply(DEMO).exit_code == 0
    doc = demo_doc()
    doc["tenants"][0]["currency"] = "eur"
    doc["subscriptions"] = doc["subscriptions"][1:]  # sub_acme is the history's
    doc["credit_grants"] = [g for g in doc["credit_grants"] if g["tenant_id"] != "acme"]
    moved = tmp_path / "moved.yaml"
    moved.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = apply(moved)
    assert result.exit_code == 2, result.output
    assert (
        "tenants[0].currency: tenant 'acme' pays in usd for subscription 'sub_acme' (plan "
        "'pro'): its currency changes once no subscription runs (cancel it first)"
    ) in " ".join(result.output.split())
    with psycopg.connect(warehouse) as conn:
        cancel(conn, "sub_acme", datetime.now(UTC), at_period_end=False)
    assert apply(moved).exit_code == 0


def test_discounts_and_grants_are_records_never_edited(warehouse: str, tmp_path: Path) -> None:
    doc = demo_doc()
    doc["discounts"] = [DISCOUNT]
    doc["credit_grants"] = [GRANT]
    first = tmp_path / "first.yaml"
    first.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert apply(first).exit_code == 0
    assert apply(first).exit_code == 0  # the same records again: no change
    doc["credit_grants"][0] = {**GRANT, "amount": "5"}  # the same amount, written otherwise
    doc["discounts"][0] = {**DISCOUNT, "months": 3}
    doc["credit_grants"].append({**GRANT, "id": "g2", "priority": 2})
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = apply(changed)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert (
        "discounts[0].months: discount 'd1' was recorded with months none, not 3: a discount "
        "is never edited (give a new one another id)" in message
    )
    assert "credit_grants" not in message
    with psycopg.connect(warehouse) as conn:
        recorded = conn.execute(
            "select (select count(*) from app.discounts), (select count(*) from app.credit_grants)"
        ).fetchone()
    assert recorded == (1, 1)  # nothing of the refused apply was written


def test_a_catalog_from_before_trials_keeps_its_plan_versions() -> None:
    """A plan's content hash (what decides a new version) is the one the first release
    computed while the plan leaves the trial keys and its charges the keys of pricing by
    dimension out: the first four are the demo plans' hashes before either existed."""
    from warehouse.catalog import _plan_sha, parse_catalog

    catalog = parse_catalog(DEMO.read_text(), str(DEMO))
    assert {plan.key: _plan_sha(plan) for plan in catalog.plans} == {
        "starter": "e6ec51be8e62019fa19e3e7da5589a185fc3e0f473001d8f56d93ce0da1a37d5",
        "pro": "5190cce55b1f8fb1300a0b5f57a4594d21fa72a455805082fbc82a2645faaa9f",
        "scale_eu": "a4bde46fcabf799820f28804c41625f1f265e29b3b233a6c1a2593eddf139378",
        "team_jp": "8f3f601eb1c9e7ba72d3fc00d31927336174aa6d8174b04144f2a0d9d217a671",
        "ai_usage": "ad8f096b4022aaa1f5c683db2c441dc52ff628af71a30a23951969f56a657253",
    }
    # a trial, or a minimum commitment, is new content: a new version
    doc = demo_doc()
    doc["plans"][0]["minimum_commitment"] = "10.00"
    committed = parse_catalog(yaml.safe_dump(doc), "minimum.yaml")
    assert _plan_sha(committed.plans[0]) != _plan_sha(catalog.plans[0])
    doc = demo_doc()
    doc["plans"][1]["trial_days"] = 14
    with_trial = parse_catalog(yaml.safe_dump(doc), "trial.yaml")
    assert _plan_sha(with_trial.plans[1]) != _plan_sha(catalog.plans[1])
