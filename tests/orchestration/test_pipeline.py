"""How the pipeline runs dbt: a run's vars reach the SQL it compiles, though dbt parses the
project without them (orchestration.dbt_run), and a failing run says why."""

from __future__ import annotations

import json

import psycopg
import pytest

from orchestration.pipeline import PipelineError, run_dbt
from warehouse.migrate import apply_migrations

pytestmark = pytest.mark.slow


def test_a_runs_vars_reach_its_sql_and_a_failure_shows_dbts_error(warehouse: str) -> None:
    with psycopg.connect(warehouse) as conn:
        apply_migrations(conn)
    select = ["--select", "+fct_usage_daily", "--exclude-resource-type", "unit_test"]
    run_dbt(["build", *select, "--vars", json.dumps({"min_date": "2026-10-01"})], quiet=True)

    with pytest.raises(PipelineError) as failed:
        run_dbt(["build", *select, "--vars", json.dumps({"min_date": "not-a-day"})], quiet=True)
    message = str(failed.value)
    assert message.startswith("dbt build failed (exit 1)")
    assert "not-a-day" in message  # PostgreSQL's error about the cast of the run's var
