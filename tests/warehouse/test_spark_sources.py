"""The sources' stamp decides whether a run on Spark copies them again and whether the monthly
run builds the days first: it must change with any row of any source, and only then. Checked
on PostgreSQL alone (the copy and the builds on Spark: tests/spark)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from ingest.writer import Event
from orchestration.pipeline import plan_daily, prepare_target, target_built
from tests.e2e.test_billing_engine import store, utc
from warehouse.settings import get_settings
from warehouse.spark import _record, sources_stamp, sources_unchanged_since


def stamp(url: str) -> str:
    with psycopg.connect(url) as conn:
        return sources_stamp(conn)


def test_the_stamp_changes_with_any_row_of_any_source_and_only_then(
    warehouse: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = stamp(warehouse)
    assert stamp(warehouse) == first  # nothing changed

    store(warehouse, [Event("acme", "api_calls", Decimal(1), utc(2026, 10, 3), "k-1")])
    with_event = stamp(warehouse)
    assert with_event != first
    with psycopg.connect(warehouse) as conn:  # an app table, changed in place and back
        conn.execute(
            "insert into app.currencies (currency, minor_unit) values ('xts', 2)"
            " on conflict do nothing"
        )
    with_currency = stamp(warehouse)
    assert with_currency != with_event
    with psycopg.connect(warehouse) as conn:
        conn.execute("update app.currencies set minor_unit = 3 where currency = 'xts'")
    assert stamp(warehouse) != with_currency
    with psycopg.connect(warehouse) as conn:
        conn.execute("update app.currencies set minor_unit = 2 where currency = 'xts'")
    assert stamp(warehouse) == with_currency  # the same rows: the same stamp

    # the run's view of it: the copy recorded, then the daily build that read it
    monkeypatch.setenv("BILLING_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BILLING_DBT_TARGET", "spark")
    get_settings.cache_clear()
    assert not sources_unchanged_since("copied")  # never copied
    assert plan_daily(None).pending
    _record(get_settings(), copied=with_currency)
    assert sources_unchanged_since("copied")
    assert prepare_target() is False  # as the last copy left them: no copy (no Spark here)
    assert plan_daily(None).pending  # copied, not built yet
    target_built()
    plan = plan_daily(None)
    assert not plan.pending
    assert plan.sources == with_currency  # the stamp the run's copy compares
    assert prepare_target(stamp=plan.sources) is False
    assert not sources_unchanged_since("copied", stamp="another")
    store(warehouse, [Event("acme", "api_calls", Decimal(1), utc(2026, 10, 4), "k-2")])
    assert not sources_unchanged_since("copied")
    assert plan_daily(None).pending
    # sources that are Spark tables already: nothing is known of them, the days are built
    _record(get_settings(), copied=stamp(warehouse), built=stamp(warehouse))
    monkeypatch.setenv("BILLING_SPARK_COPY_SOURCES", "false")
    get_settings.cache_clear()
    plan = plan_daily(None)
    assert plan.pending and plan.sources is None
    assert prepare_target() is None  # nothing is copied
