"""The dbt project itself: unit tests pass, docs generate, every mart column is described,
and its own generic tests fail on what they forbid."""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner

from billing.cli import main
from orchestration.pipeline import PipelineError, artifacts_dir, run_dbt
from tests.helpers import REPO

pytestmark = pytest.mark.slow


def test_unit_tests_pass_and_docs_describe_every_mart_column(warehouse: str) -> None:
    result = CliRunner().invoke(
        main, ["catalog", "apply", str(REPO / "examples/demo_catalog.yaml")]
    )
    assert result.exit_code == 0, result.output
    # every model built first: unit tests read their inputs' column types
    run_dbt(["build", "--exclude-resource-type", "unit_test"], quiet=True)
    run_dbt(["test", "--select", "test_type:unit"], quiet=True)
    run_dbt(["docs", "generate"], quiet=True)

    manifest = json.loads((artifacts_dir() / "manifest.json").read_text())
    catalog = json.loads((artifacts_dir() / "catalog.json").read_text())
    unit_tests = [n for n in manifest["unit_tests"].values()]
    assert len(unit_tests) >= 7
    marts = [
        node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["schema"] == "marts"
    ]
    assert {m["name"] for m in marts} >= {
        "fct_usage_daily",
        "fct_invoice_lines",
        "fct_invoices",
        "fct_unbilled_usage",
        "fct_event_conflicts",
        "dim_tenants",
        "dim_plans",
        "fct_revenue_monthly",
        "fct_mrr_monthly",
        "fct_billing_reconciliation",
    }
    assert {e["name"] for e in manifest["exposures"].values()} == {
        "revenue_dashboard",
        "stripe_sync",
    }
    assert {"minor_units", "mrr_movement", "invoice_status"} <= {
        d["name"] for d in manifest["docs"].values()
    }
    for model in marts:
        assert model["description"].lower().startswith("one row per"), model["name"]
        assert model["config"]["contract"]["enforced"], model["name"]
        actual = catalog["nodes"][model["unique_id"]]["columns"]
        for column in actual:
            described = model["columns"].get(column, {}).get("description", "")
            assert described.strip(), f"{model['name']}.{column} has no description"


def test_unique_combination_lists_each_row_of_a_combination_held_twice(warehouse: str) -> None:
    """The generic test counts by a window (macros/test_unique_combination.sql): a
    combination held twice fails it, each of its rows a result; held once, it passes."""
    run_dbt(["build", "--select", "fct_usage_daily", "--exclude-resource-type", "test"], quiet=True)
    row = ("acme", "api_calls", "2026-10-01", 1, 1, "{}")
    with psycopg.connect(warehouse) as conn:
        conn.execute(
            "insert into marts.fct_usage_daily"
            " (tenant_id, metric, usage_date, quantity, event_count, dimensions)"
            " values (%s, %s, %s, %s, %s, %s), (%s, %s, %s, %s, %s, %s),"
            " ('acme', 'api_calls', '2026-10-02', 1, 1, '{}')",
            row + row,
        )
    only_it = ["test", "--select", "fct_usage_daily,test_name:unique_combination"]
    # each row of the combination held twice fails, the day held once does not
    with pytest.raises(PipelineError, match="Got 2 results"):
        run_dbt(only_it, quiet=True)
    with psycopg.connect(warehouse) as conn:
        conn.execute(
            "delete from marts.fct_usage_daily where ctid ="
            " (select max(ctid) from marts.fct_usage_daily where usage_date = '2026-10-01')"
        )
    run_dbt(only_it, quiet=True)  # each combination once: passes


def test_unique_combination_in_a_monthly_window_reads_the_months_a_run_prices(
    warehouse: str,
) -> None:
    """With `monthly_window`, the generic test reads the months of the run's vars
    (in_monthly_window): a line id held twice in January 2025 passes a run of October 2026
    and fails one of January, and dbt's tests without vars (every month)."""
    run_dbt(
        ["build", "--select", "+fct_invoice_lines", "--exclude-resource-type", "test"], quiet=True
    )
    with psycopg.connect(warehouse) as conn:
        conn.execute(
            "insert into marts.fct_invoice_lines (invoice_id, line_id, tenant_id, line_type,"
            " amount_minor, currency, description, period_start)"
            " select 'inv_old', 'inv_old_1', 'acme', 'base_fee', 100, 'usd', 'old fee',"
            " timestamptz '2025-01-01Z' from generate_series(1, 2)"
        )
    only_it = ["test", "--select", "fct_invoice_lines,test_name:unique_combination"]

    def months(start: str, end: str) -> list[str]:
        return ["--vars", json.dumps({"min_month": start, "max_month": end})]

    run_dbt(only_it + months("2026-10-01", "2026-11-01"), quiet=True)
    with pytest.raises(PipelineError, match="Got 2 results"):
        run_dbt(only_it + months("2025-01-01", "2025-02-01"), quiet=True)
    with pytest.raises(PipelineError, match="Got 2 results"):
        run_dbt(only_it, quiet=True)
