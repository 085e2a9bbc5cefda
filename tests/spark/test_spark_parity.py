"""The same dbt models on Spark (dbt-spark, a local session from the pyspark wheel) give the
same invoices as on PostgreSQL: one realistic month and its successor (every pricing model,
proration, a yearly plan's credit, a three-decimal currency, a finalized month and the late
usage billed on the next invoice as adjustments), compared row for row."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from orchestration.pipeline import PipelineError, run_daily, run_monthly
from tests.e2e.test_billing_engine import CATALOG, NOV, OCT, history, store, usage, utc
from tests.engine_helpers import apply_catalog
from warehouse.settings import get_settings
from warehouse.spark import spark_session

pytestmark = pytest.mark.slow
MARTS = {"fct_invoice_lines": "line_id", "fct_invoices": "invoice_id"}
# A prorated line's quantity is a fraction of a month, which has no finite decimal form:
# PostgreSQL carries it to 20 decimals, Spark to at least 6 (DECISIONLOG.md, Spark).
# Every amount is exact on both.
FRACTION = Decimal("0.000001")


def normalized(value: Any) -> Any:
    """One form per value, whichever engine returned it: instants in UTC, decimals to the
    millionth (quantities; amounts are integers in minor units)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.astimezone()).astimezone(UTC)
    if isinstance(value, Decimal):
        return value.quantize(FRACTION)
    return value


def postgres_rows(url: str, table: str, key: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"select * from marts.{table} order by {key}")
        names = [c.name for c in cur.description or ()]
        return [{n: normalized(v) for n, v in zip(names, row, strict=True)} for row in cur]


def spark_rows(spark: Any, table: str, key: str) -> list[dict[str, Any]]:
    rows = spark.sql(f"select * from marts.{table} order by {key}").collect()
    return [{n: normalized(v) for n, v in row.asDict().items()} for row in rows]


def test_spark_builds_the_same_invoices(
    warehouse: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BILLING_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    apply_catalog(CATALOG, tmp_path)
    history(
        warehouse,
        ("s_up", "t_up", "change_plan", utc(2026, 10, 10, 12), "plus", False),
        ("s_cancel", "t_cancel", "cancel", utc(2026, 10, 20, 6), None, False),
        ("s_end", "t_end", "cancel", utc(2026, 10, 15), None, True),
        ("s_year", "t_year", "change_plan", utc(2026, 10, 15), "basic", False),
    )
    events = usage(1, utc(2026, 9, 25), utc(2026, 11, 5), "e", 3000)
    store(warehouse, events + events[:200])  # retries count once
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
    run_daily(OCT, NOV, quiet=True)
    run_monthly(OCT, quiet=True)
    run_monthly(NOV, quiet=True)

    with spark_session() as spark:
        built = {table: spark_rows(spark, table, key) for table, key in MARTS.items()}
        assert spark.sql("select count(*) from raw.events").first()[0] == 3000 + 2 + 200 + 400 + 2
    for table, key in MARTS.items():
        assert differences(built[table], expected[table], key) == [], table


def differences(
    on_spark: list[dict[str, Any]], on_postgres: list[dict[str, Any]], key: str
) -> list[tuple[Any, str, Any, Any]]:
    """(row key, column, Spark's value, PostgreSQL's value) for every value that differs."""
    theirs = {row[key]: row for row in on_postgres}
    found = [(k, "(row)", "missing", "present") for k in theirs.keys() - {r[key] for r in on_spark}]
    for row in on_spark:
        other = theirs.get(row[key])
        if other is None:
            found.append((row[key], "(row)", "present", "missing"))
            continue
        found += [(row[key], c, v, other.get(c)) for c, v in row.items() if v != other.get(c)]
    return found
