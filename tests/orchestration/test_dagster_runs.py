"""Dagster runs the same code as the CLI: a backfill of a whole month of daily partitions in
one run equals the daily runs one by one and the CLI's run; the monthly partition equals
`billing run monthly`; late events make the next daily run rebuild exactly their days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from dagster import DagsterInstance, materialize

from ingest.writer import Event, copy_events
from orchestration.cli import main
from orchestration.demo import DEMO_CATALOG, generate_usage
from orchestration.pipeline import MANIFEST_PATH, run_daily

pytestmark = pytest.mark.slow
OCT = date(2026, 10, 1)
DBT_TARGETS = MANIFEST_PATH.parent  # dagster-dbt gives each run a directory here


def load_demo(url: str) -> None:
    assert CliRunner().invoke(main, ["catalog", "apply", str(DEMO_CATALOG)]).exit_code == 0
    with psycopg.connect(url) as conn:
        copy_events(conn, generate_usage(OCT, seed=3))


def table(url: str, name: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(f"select * from marts.{name} order by 1, 2, 3").fetchall()  # type: ignore[arg-type]


def clear(url: str, name: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(f"truncate marts.{name}")  # type: ignore[arg-type]


def test_backfill_daily_runs_cli_and_monthly_agree(warehouse: str) -> None:
    from orchestration.definitions import (
        daily_usage_models,
        dbt_resource,
        monthly_invoice_models,
        unpartitioned_models,
    )

    load_demo(warehouse)
    instance = DagsterInstance.ephemeral()
    resources = {"dbt": dbt_resource}
    targets_before = set(DBT_TARGETS.iterdir()) if DBT_TARGETS.exists() else set()

    def run(assets: list[Any], **kwargs: Any) -> None:
        result = materialize(assets, resources=resources, instance=instance, **kwargs)
        assert result.success

    run([unpartitioned_models])
    run(
        [daily_usage_models],
        tags={
            "dagster/asset_partition_range_start": "2026-10-01",
            "dagster/asset_partition_range_end": "2026-10-31",
        },
    )
    backfilled = table(warehouse, "fct_usage_daily")
    assert len({row[2] for row in backfilled}) == 31  # every day of October, in one run

    clear(warehouse, "fct_usage_daily")
    day = OCT
    while day.month == 10:
        run([daily_usage_models], partition_key=day.isoformat())
        day += timedelta(days=1)
    assert table(warehouse, "fct_usage_daily") == backfilled

    clear(warehouse, "fct_usage_daily")
    cli = CliRunner().invoke(main, ["run", "daily", "--from", "2026-10-01", "--to", "2026-10-31"])
    assert cli.exit_code == 0, cli.output
    assert table(warehouse, "fct_usage_daily") == backfilled

    run([monthly_invoice_models], partition_key="2026-10-01")
    through_dagster = (table(warehouse, "fct_invoices"), table(warehouse, "fct_invoice_lines"))
    assert through_dagster[0]
    cli = CliRunner().invoke(main, ["run", "monthly", "--month", "2026-10"])
    assert cli.exit_code == 0, cli.output
    assert (table(warehouse, "fct_invoices"), table(warehouse, "fct_invoice_lines")) == (
        through_dagster
    )

    # Each Dagster run passes its window as dbt vars; only the first re-parsed the project
    # (`make manifest` parsed it for another profile: no warehouse).
    logs = [
        (target / "dbt.log").read_text()
        for target in set(DBT_TARGETS.iterdir()) - targets_before
        if (target / "dbt.log").exists()
    ]
    with_vars = [log for log in logs if "--vars" in log]
    assert len(with_vars) == 33  # the backfill, 31 days, the month
    assert sum("Unable to do partial parsing" in log for log in with_vars) <= 1


def test_late_events_rebuild_exactly_their_days(warehouse: str) -> None:
    load_demo(warehouse)
    run_daily(date(2026, 10, 1), date(2026, 10, 3), quiet=True)

    def versions() -> dict[date, set[str]]:
        with psycopg.connect(warehouse) as conn:
            rows = conn.execute(
                "select usage_date, xmin::text from marts.fct_usage_daily"
            ).fetchall()
        found: dict[date, set[str]] = {}
        for day, xmin in rows:
            found.setdefault(day, set()).add(xmin)
        return found

    before = versions()
    late_at = datetime(2026, 10, 2, 12, tzinfo=UTC)
    with psycopg.connect(warehouse) as conn:
        copy_events(conn, [Event("acme", "api_calls", Decimal(1000), late_at, "late-1")])
    plan = run_daily(date(2026, 10, 4), date(2026, 10, 4), quiet=True)
    assert plan.extra_days == (date(2026, 10, 2),)
    after = versions()
    assert after[date(2026, 10, 1)] == before[date(2026, 10, 1)]  # untouched
    assert after[date(2026, 10, 3)] == before[date(2026, 10, 3)]  # untouched
    assert after[date(2026, 10, 2)] != before[date(2026, 10, 2)]  # rebuilt
    with psycopg.connect(warehouse) as conn:
        row = conn.execute(
            "select quantity from marts.fct_usage_daily where tenant_id = 'acme' "
            "and metric = 'api_calls' and usage_date = '2026-10-02'"
        ).fetchone()
    events = [
        e
        for e in generate_usage(OCT, seed=3)
        if e.tenant_id == "acme"
        and e.metric == "api_calls"
        and e.timestamp.date() == date(2026, 10, 2)
    ]
    unique = {e.idempotency_key: e.amount for e in events}
    assert row == (sum(unique.values()) + 1000,)
    # and a run with nothing late rebuilds only its own day
    assert run_daily(date(2026, 10, 5), date(2026, 10, 5), quiet=True).extra_days == ()


def test_dagster_storage_lives_under_billing_home_and_survives_a_restart(tmp_path: Path) -> None:
    from dagster._core.instance.ref import InstanceRef

    from tests.helpers import REPO

    def instance() -> DagsterInstance:
        # what `dagster dev` does with DAGSTER_HOME unset: a scratch dir, our dagster.yaml
        return DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path), config_dir=str(REPO)))

    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)  # dagster.yaml's paths are relative to where dagster dev starts
    try:
        with instance() as first:
            from dagster import asset

            @asset
            def probe() -> int:
                return 1

            assert materialize([probe], instance=first).success
            run_ids = {r.run_id for r in first.get_runs()}
        with instance() as second:  # a restart
            assert {r.run_id for r in second.get_runs()} == run_ids
        assert (tmp_path / ".billing" / "dagster" / "storage" / "history" / "runs.db").exists()
    finally:
        os.chdir(cwd)
