"""The schedules alone bill a month, exactly as the CLI does: from an empty warehouse, the
daily schedule's tick for every day and the monthly tick on the 1st, each run request
executed as Dagster executes it, nothing materialized by hand; late events reach the
invoices through the scheduled runs; a monthly partition needs no daily one before it."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from dagster import DagsterInstance, RunRequest, asset, build_schedule_context, materialize

from billing.cli import main
from billing.demo import DEMO_CATALOG, generate_usage
from ingest.writer import Event, copy_events
from orchestration.dbt_run import parse_target
from orchestration.dbt_vars import Window, current_month
from orchestration.pipeline import DBT_PROJECT_DIR, dbt_env, run_daily, run_monthly, unbuilt_days
from tests.helpers import parse_state_file
from warehouse.settings import get_settings

pytestmark = pytest.mark.slow
OCT = date(2026, 10, 1)
# where dbt's parse state lives: the project's target, or this test process's own
TARGET = DBT_PROJECT_DIR / parse_target()
LATE = Event("acme", "api_calls", Decimal(1000), datetime(2026, 10, 3, 12, tzinfo=UTC), "late-1")

INVOICES = """select invoice_id, tenant_id, currency, period_start, period_end, status,
                     subtotal_minor, tax_minor, total_minor
              from marts.fct_invoices order by invoice_id"""
LINES = """select invoice_id, line_id, tenant_id, line_type, metric, plan, quantity,
                  billable_quantity, amount_minor, currency, description, service_start,
                  service_end
           from marts.fct_invoice_lines order by invoice_id, line_id"""
USAGE = """select tenant_id, metric, usage_date, quantity, event_count, dimensions
           from marts.fct_usage_daily order by 1, 2, 3, 6"""


def load_demo(url: str) -> None:
    result = CliRunner().invoke(main, ["catalog", "apply", str(DEMO_CATALOG)])
    assert result.exit_code == 0, result.output
    with psycopg.connect(url) as conn:
        copy_events(conn, generate_usage(OCT, seed=3))


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()  # type: ignore[arg-type]


def tick(instance: DagsterInstance, schedule_name: str, at: datetime) -> list[RunRequest]:
    from orchestration.definitions import defs

    schedule = defs.resolve_schedule_def(schedule_name)
    with build_schedule_context(instance=instance, scheduled_execution_time=at) as context:
        result = schedule.evaluate_tick(context)
    return list(result.run_requests or [])


def execute(instance: DagsterInstance, schedule_name: str, request: RunRequest) -> None:
    """What the daemon does with a tick's run request: a run of the schedule's job for the
    request's partition, with its tags."""
    from orchestration.definitions import defs

    job = defs.resolve_schedule_def(schedule_name).job
    tags = {k: v for k, v in request.tags.items() if not k.startswith("dagster/")}
    result = defs.resolve_job_def(job.name).execute_in_process(
        instance=instance, partition_key=request.partition_key, tags=tags
    )
    assert result.success, request


def backfill(assets: Any, first: str, last: str) -> None:
    """A backfill of the partitions first..last (included) in one run, as the assets'
    single-run backfill policy runs it."""
    from orchestration.definitions import dbt_resource

    result = materialize(
        [assets],
        resources={"dbt": dbt_resource},
        instance=DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
    )
    assert result.success


@pytest.mark.minutes(2)
def test_the_schedules_alone_bill_a_month_as_billing_run_does(
    warehouse: str, server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a home of its own: the runs' scratch directories are this test's alone to count
    monkeypatch.setenv("BILLING_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    load_demo(warehouse)
    instance = DagsterInstance.ephemeral()
    targets_before = set(TARGET.iterdir())
    parse_state = parse_state_file(dbt_env())
    parsed_at = None

    # every day's 01:00 tick builds the day before; the 1st's 02:00 tick closes October
    for day in (OCT + timedelta(days=n) for n in range(1, 32)):
        (request,) = tick(
            instance, "daily_usage_0100_utc", datetime(day.year, day.month, day.day, 1, tzinfo=UTC)
        )
        assert request.partition_key == (day - timedelta(days=1)).isoformat()
        execute(instance, "daily_usage_0100_utc", request)
        if day == OCT + timedelta(days=1):
            parsed_at = parse_state.stat().st_mtime_ns
        if day == date(2026, 10, 15):  # a late event for a day built long ago
            with psycopg.connect(warehouse) as conn:
                copy_events(conn, [LATE])
    (request,) = tick(
        instance, "monthly_invoices_0200_utc_on_1st", datetime(2026, 11, 1, 2, tzinfo=UTC)
    )
    assert request.partition_key == "2026-10-01"
    execute(instance, "monthly_invoices_0200_utc_on_1st", request)

    # Each run passed its window as dbt vars; after the first, none re-parsed the project
    # (dbt rewrites its parse state only when it parses), and dbt's per-run artifacts did
    # not stay behind.
    assert parse_state.stat().st_mtime_ns == parsed_at
    assert set(TARGET.iterdir()) <= targets_before | {TARGET / "parse"}
    assert not list((get_settings().home_dir / "dagster" / "dbt").iterdir())

    invoices = rows(warehouse, INVOICES)
    assert invoices and {row[5] for row in invoices} == {"finalized"}
    usage = rows(warehouse, USAGE)
    assert len({row[2] for row in usage}) == 31
    acme_oct_3 = [r for r in usage if r[:3] == ("acme", "api_calls", date(2026, 10, 3))]
    expected = sum(
        {
            e.idempotency_key: e.amount
            for e in generate_usage(OCT, seed=3)
            if e.tenant_id == "acme"
            and e.metric == "api_calls"
            and e.timestamp.date() == date(2026, 10, 3)
        }.values()
    )
    assert acme_oct_3[0][3] == expected + LATE.amount  # the late event, through the schedules

    # The CLI on the same data, from an empty warehouse: this one made again, under the
    # same name (dbt keeps its parse state per database name: database_copy). A month
    # closed with no daily run before it builds the month's days itself.
    lines = rows(warehouse, LINES)
    name = psycopg.conninfo.conninfo_to_dict(warehouse)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'drop database "{name}" with (force)')
        conn.execute(f'create database "{name}"')
    load_demo(warehouse)
    with psycopg.connect(warehouse) as conn:
        copy_events(conn, [LATE])
    result = CliRunner().invoke(main, ["run", "monthly", "--month", "2026-10", "--finalize"])
    assert result.exit_code == 0, result.output
    assert rows(warehouse, INVOICES) == invoices
    assert rows(warehouse, LINES) == lines
    assert rows(warehouse, USAGE) == usage


@pytest.mark.minutes(0.25)
def test_a_backfill_in_one_run_equals_the_days_one_by_one(warehouse: str) -> None:

    from orchestration.definitions import daily_usage_models

    load_demo(warehouse)
    run_daily(date(2026, 10, 1), date(2026, 10, 31), quiet=True)
    by_day = rows(warehouse, USAGE)
    with psycopg.connect(warehouse) as conn:
        conn.execute("truncate marts.fct_usage_daily")
    backfill(daily_usage_models, "2026-10-01", "2026-10-31")
    assert rows(warehouse, USAGE) == by_day


@pytest.mark.minutes(0.25)
def test_a_monthly_backfill_in_one_run_equals_the_months_one_by_one(
    warehouse: str, tmp_path: Path
) -> None:
    """October closed, then late usage and a backdated cancellation for it: November's
    invoices carry the corrections. A backfill of October and November in one run (the
    monthly asset's single-run policy) bills them there too, although its first month is
    the closed one (dbt_project/macros/windows.sql, adjustment_month)."""
    from orchestration.definitions import monthly_invoice_models
    from tests.e2e.test_billing_engine import NOV, history, october_story, store, usage, utc

    october_story(warehouse, tmp_path)
    run_monthly(OCT, finalize=True, quiet=True)
    store(warehouse, usage(2, utc(2026, 10, 1), utc(2026, 11, 1), "late", 400))
    history(warehouse, ("s_kwd", "t_kwd", "cancel", utc(2026, 10, 25), None, False))
    run_monthly(NOV, quiet=True)
    by_month = rows(warehouse, LINES), rows(warehouse, INVOICES)
    assert any(line[3] == "adjustment" for line in by_month[0])
    with psycopg.connect(warehouse) as conn:
        conn.execute("delete from marts.fct_invoice_lines where period_start >= %s", (NOV,))
    backfill(monthly_invoice_models, "2026-10-01", "2026-11-01")
    assert (rows(warehouse, LINES), rows(warehouse, INVOICES)) == by_month


def test_a_monthly_partition_before_any_daily_one(warehouse: str) -> None:
    from orchestration.checks import reconcile_month

    load_demo(warehouse)
    instance = DagsterInstance.ephemeral()
    (request,) = tick(
        instance, "monthly_invoices_0200_utc_on_1st", datetime(2026, 11, 1, 2, tzinfo=UTC)
    )
    execute(instance, "monthly_invoices_0200_utc_on_1st", request)
    assert {row[5] for row in rows(warehouse, INVOICES)} == {"finalized"}
    assert len({row[2] for row in rows(warehouse, USAGE)}) == 31
    with psycopg.connect(warehouse) as conn:
        assert reconcile_month(conn, OCT) == []
    # and the daily tick afterwards builds only its day
    (request,) = tick(instance, "daily_usage_0100_utc", datetime(2026, 11, 2, 1, tzinfo=UTC))
    execute(instance, "daily_usage_0100_utc", request)


def test_a_tick_on_a_warehouse_nothing_set_up_applies_its_migrations(empty_database: str) -> None:
    """A warehouse without its tables (a new one; after an upgrade, one lacking the new
    migrations): the reads say what builds what they read, and the schedule's first tick
    applies the migrations, as `billing db up` would, and bills the day."""
    from warehouse.migrate import available

    for command in (["invoices", "list"], ["invoices", "show", "inv_x"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, result.output
        assert "no invoices yet: run `billing run monthly --month YYYY-MM` first" in result.output
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("select to_regclass('app.schema_migrations')").fetchone() == (None,)

    instance = DagsterInstance.ephemeral()
    (request,) = tick(instance, "daily_usage_0100_utc", datetime(2026, 10, 2, 1, tzinfo=UTC))
    execute(instance, "daily_usage_0100_utc", request)
    with psycopg.connect(empty_database) as conn:
        applied = [r[0] for r in conn.execute("select version from app.schema_migrations")]
        runs = conn.execute("select kind, window_start from app.pipeline_runs").fetchall()
    assert sorted(applied) == [m.version for m in available()]
    assert runs == [("daily", date(2026, 10, 1))]
    result = CliRunner().invoke(main, ["run", "monthly", "--month", "2026-10"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["invoices", "list"])
    assert result.exit_code == 0, result.output


@pytest.mark.minutes(0.25)
def test_late_events_rebuild_exactly_their_days(warehouse: str) -> None:
    load_demo(warehouse)
    run_daily(date(2026, 10, 1), date(2026, 10, 3), quiet=True)

    def versions() -> dict[date, set[str]]:
        with psycopg.connect(warehouse) as conn:
            found_rows = conn.execute(
                "select usage_date, xmin::text from marts.fct_usage_daily"
            ).fetchall()
        found: dict[date, set[str]] = {}
        for day, xmin in found_rows:
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
    # a late event for a day after the window (built before it) is rebuilt too
    with psycopg.connect(warehouse) as conn:
        copy_events(
            conn, [Event("acme", "api_calls", Decimal(5), late_at + timedelta(days=2), "late-2")]
        )
    assert run_daily(date(2026, 10, 1), date(2026, 10, 1), quiet=True).extra_days == (
        date(2026, 10, 4),
    )
    # and a run with nothing late rebuilds only its own day
    assert run_daily(date(2026, 10, 5), date(2026, 10, 5), quiet=True).extra_days == ()
    # a warehouse without the live views the plan reads (one from before them): the run
    # builds them before it plans, and finds the late day
    with psycopg.connect(warehouse) as conn:
        conn.execute("drop view intermediate.int_events_unstored cascade")
        copy_events(conn, [Event("acme", "api_calls", Decimal(7), late_at, "late-3")])
    assert run_daily(date(2026, 10, 6), date(2026, 10, 6), quiet=True).extra_days == (
        date(2026, 10, 2),
    )
    # a monthly run catches up the days no run built, not the late days runs rebuilt
    assert unbuilt_days(Window(date(2026, 10, 1), date(2026, 10, 7))) is None
    assert unbuilt_days(Window(date(2026, 10, 1), date(2026, 10, 9))) == Window(
        date(2026, 10, 7), date(2026, 10, 9)
    )


def test_events_on_days_before_every_run_reach_the_marts_through_the_ticks(
    warehouse: str,
) -> None:
    """Events no window would ever cover, sent with a tenant's key: a device whose clock
    stood at 1970 or at Go's zero time, history from before the first run. The daily tick
    that stores them builds their days, so finance sees them (in fct_unbilled_usage where no
    subscription covers them); before, they were stored and in no mart. An event in 1 BC,
    which ingest stored before it refused such times (0001-01-01T00:00:00+05:00), made
    every daily run fail (Python cannot read its day); it stays out of the marts."""
    from fastapi.testclient import TestClient

    from ingest.app import create_app
    from tests.ingest.test_events_api import event

    result = CliRunner().invoke(main, ["catalog", "apply", str(DEMO_CATALOG)])
    assert result.exit_code == 0, result.output
    created = CliRunner().invoke(main, ["apikey", "create", "--tenant", "acme"])
    key = created.stdout.strip().splitlines()[-1]

    def send(*events: tuple[str, str, int]) -> None:
        body = {
            "events": [
                event(amount=amount, timestamp=at, idempotency_key=idempotency_key)
                for at, idempotency_key, amount in events
            ]
        }
        with TestClient(create_app(), headers={"Authorization": f"Bearer {key}"}) as client:
            response = client.post("/v1/events", json=body)
        assert response.status_code == 200, response.text

    unbilled = "select usage_date, amount_sum from marts.fct_unbilled_usage order by 1"
    daily = "select usage_date, quantity from marts.fct_usage_daily order by 1"
    send(
        ("0001-01-01T00:00:00Z", "zero-1", 2),
        ("1970-01-01T00:00:07Z", "clock-1", 3),
        ("2026-09-20T10:00:00Z", "history-1", 40),
        ("2026-10-01T10:00:00Z", "october-1", 500),
    )
    with psycopg.connect(warehouse) as conn:
        conn.execute(
            """insert into raw.events (tenant_id, metric, amount, event_ts, idempotency_key)
               values ('acme', 'api_calls', 1, '0001-01-01T00:00:00+05:00', 'bc-1')"""
        )
    instance = DagsterInstance.ephemeral()
    (request,) = tick(instance, "daily_usage_0100_utc", datetime(2026, 10, 2, 1, tzinfo=UTC))
    execute(instance, "daily_usage_0100_utc", request)
    assert rows(warehouse, daily) == [
        (date(1, 1, 1), 2),
        (date(1970, 1, 1), 3),
        (date(2026, 9, 20), 40),  # sub_acme covers it: usage of a month never invoiced
        (date(2026, 10, 1), 500),
    ]
    assert rows(warehouse, unbilled) == [(date(1, 1, 1), 2), (date(1970, 1, 1), 3)]

    # a day before every window, reached again after the first run
    send(("1970-01-01T05:00:00Z", "clock-2", 4), ("2026-10-02T10:00:00Z", "october-2", 6))
    (request,) = tick(instance, "daily_usage_0100_utc", datetime(2026, 10, 3, 1, tzinfo=UTC))
    execute(instance, "daily_usage_0100_utc", request)
    assert rows(warehouse, unbilled) == [(date(1, 1, 1), 2), (date(1970, 1, 1), 7)]
    assert (date(2026, 10, 2), 6) in rows(warehouse, daily)


def dagster_dev_instance(dagster_home: Path) -> DagsterInstance:
    """The instance `dagster dev` makes with DAGSTER_HOME unset: our dagster.yaml."""
    from dagster._core.instance.ref import InstanceRef

    from tests.helpers import REPO

    return DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home), config_dir=str(REPO)))


@asset
def probe() -> int:
    return 1


def test_dagster_storage_is_sqlite_under_billing_home_for_the_embedded_warehouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BILLING_DATABASE_URL", raising=False)
    monkeypatch.setenv("BILLING_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    with dagster_dev_instance(tmp_path / "scratch") as first:
        assert materialize([probe], instance=first).success
        run_ids = {r.run_id for r in first.get_runs()}
    with dagster_dev_instance(tmp_path / "scratch") as second:  # a restart
        assert {r.run_id for r in second.get_runs()} == run_ids
    assert (tmp_path / "home" / "dagster" / "storage" / "history" / "runs.db").exists()
    get_settings.cache_clear()


def test_dagster_storage_is_the_warehouse_postgresql_when_external(
    warehouse: str, tmp_path: Path
) -> None:
    with dagster_dev_instance(tmp_path / "scratch") as first:
        assert materialize([probe], instance=first).success
        run_ids = {r.run_id for r in first.get_runs()}
    with dagster_dev_instance(tmp_path / "other") as second:  # a restart, elsewhere
        assert {r.run_id for r in second.get_runs()} == run_ids
    assert rows(warehouse, "select run_id from dagster.runs") == [(r,) for r in run_ids]
    assert not (tmp_path / "scratch" / "history").exists()


def test_dagsters_directory_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It holds run logs and artifacts with copies of events (Spark's: tests/spark)."""
    monkeypatch.delenv("BILLING_DATABASE_URL", raising=False)
    monkeypatch.setenv("BILLING_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    (tmp_path / "home" / "dagster").mkdir(parents=True)  # from an older version
    (tmp_path / "home" / "dagster").chmod(0o755)
    with dagster_dev_instance(tmp_path / "scratch"):
        pass
    assert (tmp_path / "home" / "dagster").stat().st_mode & 0o777 == 0o700
    get_settings.cache_clear()


def test_the_reconciliation_check_outside_a_partition_reads_the_utc_month(warehouse: str) -> None:
    """Run without a partition (from the UI, say), the invoices' reconciliation check reads
    the current month of the billing calendar, which is UTC's whatever the machine's zone."""
    from dagster import build_asset_check_context

    from orchestration.definitions import invoices_reconcile_with_daily_usage

    load_demo(warehouse)
    now = datetime.now(UTC).replace(microsecond=0)
    month = current_month(now)
    with psycopg.connect(warehouse) as conn:
        copy_events(conn, [Event("acme", "api_calls", Decimal(7), now, f"now-{uuid.uuid4()}")])
    run_monthly(month, quiet=True)
    result = invoices_reconcile_with_daily_usage(build_asset_check_context())
    assert result.passed, result.metadata
    assert result.metadata["month"].value == str(month)
    assert result.metadata["mismatches"].value == 0
