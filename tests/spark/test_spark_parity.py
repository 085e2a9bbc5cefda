"""The same dbt models on Spark (dbt-spark, a local session from the pyspark wheel) give the
same invoices as on PostgreSQL: one realistic month and its successor (every pricing model,
proration, a yearly plan's credit, a three-decimal currency, a finalized month and the late
usage billed on the next invoice as adjustments), compared row for row, built on Spark by
`billing run daily` and Dagster's monthly asset, both served by one Spark worker."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from orchestration.dbt_run import PARSE_TARGET_ENV
from orchestration.pipeline import PipelineError, run_daily, run_dbt, run_monthly
from tests.e2e.test_billing_engine import NOV, OCT, history, october_story, store, usage, utc
from tests.helpers import billing, pid_alive, wait_ended, worker_starts
from warehouse.settings import get_settings
from warehouse.spark import end_worker, queries

# a local Spark's JVM, started once by the test's Spark worker and warmed up there: minutes,
# more beside another test on two cores (the suite's 15-minute cap is for the rest)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
MARTS = {"fct_invoice_lines": "line_id", "fct_invoices": "invoice_id"}
PRICING_MODELS = (
    "int_segment_charges_billable",
    "int_segment_charges_priced",
    "int_invoice_lines_priced",
)
# A prorated line's quantity is a fraction of a month, which has no finite decimal form:
# PostgreSQL carries it to 20 decimals, Spark to at least 6 (DECISIONLOG.md, Spark).
# Every amount is exact on both.
FRACTION = Decimal("0.000001")


def normalized(value: Any) -> Any:
    """One form per value, whichever engine returned it: instants in UTC, decimals to the
    millionth (quantities; amounts are integers in minor units)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, Decimal):
        return value.quantize(FRACTION)
    return value


def postgres_rows(url: str, table: str, key: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"select * from marts.{table} order by {key}")
        names = [c.name for c in cur.description or ()]
        return [{n: normalized(v) for n, v in zip(names, row, strict=True)} for row in cur]


def spark_rows(statements: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Each query's rows, normalized, by name: one Spark session for them all."""
    found = queries(list(statements.values()))
    return {
        name: [{n: normalized(v) for n, v in row.items()} for row in rows]
        for name, rows in zip(statements, found, strict=True)
    }


@pytest.mark.minutes(2.5)
def test_spark_builds_the_same_invoices_through_the_cli_and_dagster(
    warehouse: str, tmp_path: Path, sockets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL: October closed, late usage and a late cancellation, November's draft,
    each month by `billing run monthly`. On Spark: the days by `billing run daily` in its
    own process, October and November by Dagster's monthly asset (one run of both
    partitions, as a backfill runs them); both marts equal PostgreSQL's row for row.
    Everything on Spark (the copy, the CLI's and Dagster's dbt commands, the queries) runs
    in one JVM, the Spark worker's, which its caller ends when done with the warehouse."""
    from dagster import DagsterInstance, materialize

    from orchestration.definitions import dbt_resource, monthly_invoice_models

    monkeypatch.setenv("BILLING_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(sockets))  # its workers, ended after the test
    get_settings.cache_clear()
    october_story(warehouse, tmp_path)
    run_monthly(OCT, finalize=True, quiet=True)
    store(warehouse, usage(2, utc(2026, 10, 1), utc(2026, 11, 1), "late", 400))
    history(warehouse, ("s_kwd", "t_kwd", "cancel", utc(2026, 10, 25), None, False))
    run_daily(OCT, NOV, quiet=True)
    run_monthly(NOV, quiet=True)
    expected = {table: postgres_rows(warehouse, table, key) for table, key in MARTS.items()}
    assert any(line["line_type"] == "adjustment" for line in expected["fct_invoice_lines"])
    assert {i["status"] for i in expected["fct_invoices"]} == {"finalized", "draft"}

    monkeypatch.setenv("BILLING_DBT_TARGET", "spark")
    get_settings.cache_clear()
    with pytest.raises(PipelineError, match="finalize on the postgres target"):
        run_monthly(OCT, finalize=True, quiet=True)
    # the CLI's daily run, as a user runs it: it copies the sources into Spark first, and
    # starts the Spark worker that serves everything below
    billing("run", "daily", "--from", "2026-10-01", "--to", "2026-11-01", check=True)
    # nothing arrived since the daily run: the monthly run neither copies the sources nor
    # builds the days again (warehouse/spark.py, the sources' stamp)
    daily_runs = "select count(*) from app.pipeline_runs where kind = 'daily'"
    with psycopg.connect(warehouse) as conn:
        before = conn.execute(daily_runs).fetchone()
    result = materialize(
        [monthly_invoice_models],
        resources={"dbt": dbt_resource},
        instance=DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": "2026-10-01",
            "dagster/asset_partition_range_end": "2026-11-01",
        },
    )
    assert result.success
    with psycopg.connect(warehouse) as conn:
        assert conn.execute(daily_runs).fetchone() == before

    built = spark_rows(
        {table: f"select * from marts.{table} order by {key}" for table, key in MARTS.items()}
        | {"events": "select count(*) as n from raw.events"}
    )
    assert built["events"] == [{"n": 3000 + 2 + 200 + 400 + 2}]
    for table, key in MARTS.items():
        assert differences(built[table], expected[table], key) == [], table

    # the money arithmetic keeps the precision it needs on Spark too: the unit tests of
    # pricing, proration and rounding (an exact 0.0049999 usd bills 0.00) pass there
    run_dbt(
        ["test", "--select", *(f"test_type:unit,{model}" for model in PRICING_MODELS)],
        quiet=True,
    )
    # its warehouse holds copies of the raw events: this user's alone
    assert (tmp_path / "home" / "spark").stat().st_mode & 0o777 == 0o700
    # one Spark worker (one JVM) served the copy, the CLI's and Dagster's dbt commands, the
    # queries and the unit tests; the runs on PostgreSQL ran in this process
    assert len(worker_starts(sockets)) == 1, worker_starts(sockets)

    # The project edited (here: another parse target, which the worker's fingerprint holds
    # as it holds the project's files) means a new worker at the next command, while the
    # one before still holds the local metastore: it hands it over and ends, its JVM with it
    monkeypatch.setenv(PARSE_TARGET_ENV, str(tmp_path / "edited"))
    assert spark_rows({"n": "select count(*) as n from marts.fct_invoices"})["n"] == [
        {"n": len(expected["fct_invoices"])}
    ]
    starts = worker_starts(sockets)
    assert len(starts) == 2, starts
    pids = [int(line.split()[2]) for line in starts]
    assert [pid_alive(pid) for pid in pids].count(True) == 1, starts
    # done with this Spark warehouse, its caller ends the worker holding it (and its JVM)
    # at once rather than after its idle time, as the benchmarks do
    assert end_worker()
    wait_ended(pids, timeout=60)
    logs = "".join(log.read_text() for log in sockets.glob("billing-dbt-*/*.log"))
    assert logs.count("handed its Spark metastore over: ended") == 2, logs
    assert not end_worker()  # none left


def differences(
    on_spark: list[dict[str, Any]], on_postgres: list[dict[str, Any]], key: str
) -> list[tuple[Any, str, Any, Any]]:
    """(row key, column, Spark's value, PostgreSQL's value) for every value that differs."""
    theirs = {row[key]: row for row in on_postgres}
    found: list[tuple[Any, str, Any, Any]] = [
        (k, "(row)", "missing", "present") for k in theirs.keys() - {r[key] for r in on_spark}
    ]
    for row in on_spark:
        other = theirs.get(row[key])
        if other is None:
            found.append((row[key], "(row)", "present", "missing"))
            continue
        found += [(row[key], c, v, other.get(c)) for c, v in row.items() if v != other.get(c)]
    return found
