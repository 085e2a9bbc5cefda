"""How the pipeline runs dbt: a run's vars reach the SQL it compiles, though dbt parses the
project without them (orchestration.dbt_run), a failing run says why, and runs take turns."""

from __future__ import annotations

import json
import threading
import time
from datetime import date

import psycopg
import pytest
from click.testing import CliRunner

from billing.cli import main
from orchestration.pipeline import (
    PREVIEW_INVOICES,
    PipelineError,
    one_run_at_a_time,
    restore_api_views,
    run_daily,
    run_dbt,
)
from tests.helpers import REPO
from warehouse.migrate import apply_migrations

DEMO_CATALOG = REPO / "examples" / "demo_catalog.yaml"

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


def test_a_process_builds_the_preview_again_each_time_a_run_dropped_it(warehouse: str) -> None:
    """A process that outlives one run (a Dagster run's process, `billing run monthly`) puts
    the upcoming invoice's view back each time a run dropped it (dbt drops a view with
    what it reads when it replaces it). The view reads ephemeral models, which the warm dbt
    compiles into it as CTEs: the second build of one process once found them marked
    injected by the first and failed ("relation __dbt__cte__fct_invoices does not exist")."""
    result = CliRunner().invoke(main, ["catalog", "apply", str(DEMO_CATALOG)])
    assert result.exit_code == 0, result.output
    for _ in range(3):
        with psycopg.connect(warehouse, autocommit=True) as conn:
            conn.execute(f"drop view if exists {PREVIEW_INVOICES}")
        restore_api_views()
        with psycopg.connect(warehouse, autocommit=True) as conn:
            conn.execute("select set_config('billing.preview_month', '2026-10-01', false)")
            conn.execute("select set_config('billing.preview_tenant', 'acme', false)")
            rows = conn.execute(f"select tenant_id from {PREVIEW_INVOICES}").fetchall()
        assert rows and {tenant for (tenant,) in rows} == {"acme"}


def test_one_run_at_a_time_a_second_run_waits_for_the_first(warehouse: str) -> None:
    """A run started while another holds the warehouse (the CLI beside a Dagster schedule)
    waits for it to end, then runs: the two dbt builds never overlap."""
    result = CliRunner().invoke(main, ["catalog", "apply", str(DEMO_CATALOG)])
    assert result.exit_code == 0, result.output
    done: list[object] = []
    with one_run_at_a_time():  # as a run in progress holds it
        second = threading.Thread(
            target=lambda: done.append(run_daily(date(2026, 10, 1), date(2026, 10, 1), quiet=True))
        )
        second.start()
        deadline = time.monotonic() + 60
        with psycopg.connect(warehouse, autocommit=True) as conn:
            while time.monotonic() < deadline:
                waiting = conn.execute(
                    "select count(*) from pg_locks where locktype = 'advisory' and not granted"
                ).fetchone()
                if waiting and waiting[0]:
                    break
                time.sleep(0.1)
            assert waiting == (1,), "the second run did not wait for the lock"
            assert not done
            built = conn.execute("select count(*) from app.pipeline_runs").fetchone()
            assert built == (0,)
    second.join(timeout=300)
    assert done, "the second run did not go on once the first ended"
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("select count(*) from app.pipeline_runs").fetchone() == (1,)
