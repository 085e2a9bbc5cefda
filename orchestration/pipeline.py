"""The daily and monthly pipeline: which dbt models to build, with which vars.

The CLI (`billing run`) and the Dagster assets both call this module, so they cannot drift.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from orchestration.dbt_vars import Window, daily_vars, days_window, month_window, monthly_vars
from warehouse.db import connect, dbt_env
from warehouse.settings import Settings, get_settings

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
# dbt_project.yml's dedup_lookback_hours: how far back before the newest stored arrival
# unseen events are looked for (a batch committed late is stamped earlier).
DEDUP_LOOKBACK_HOURS = 1
MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"

# The partitioned models: daily ones are built a UTC day at a time, monthly ones a calendar
# month at a time; every other model is unpartitioned. A run also builds what its models
# need upstream (the `+`), so the CLI never depends on an earlier run of another kind.
DAILY_MODELS = ("fct_usage_daily",)
MONTHLY_MODELS = (
    "int_invoice_rerate_months",
    "int_subscription_segments",
    "int_segment_usage_aggregated",
    "int_segment_charges_billable",
    "int_segment_charges_priced",
    "int_invoice_lines_priced",
    "int_invoice_adjustments",
    "int_invoice_lines_draft",
    "fct_invoice_lines",
    "fct_invoices",
    "int_mrr_tenant_months",
    "fct_mrr_monthly",
    "fct_revenue_monthly",
    "stg_app__stripe_webhook_events",
    "fct_billing_reconciliation",
)
DAILY_SELECT = (
    "+fct_usage_daily",
    "+fct_event_conflicts",
    "+fct_unbilled_usage",
    "+dim_tenants",
    "+dim_plans",
)
MONTHLY_SELECT = ("+fct_invoices", "+fct_mrr_monthly", "+fct_revenue_monthly")
# Reads the daily marts too: built by a monthly run once a daily run has made them (it is a
# view, rebuilt with the invoices it reads; a monthly run does not rebuild daily usage).
RECONCILIATION = ("stg_app__stripe_webhook_events", "fct_billing_reconciliation")


# Unit tests check the SQL, not the data: `make test` runs them (on PostgreSQL), not every
# pipeline run, from the CLI or Dagster.
SKIP_UNIT_TESTS = ("--exclude-resource-type", "unit_test")


class PipelineError(RuntimeError):
    """dbt failed; the message says which command."""


@dataclass(frozen=True)
class DbtInvocation:
    command: str
    select: tuple[str, ...]
    vars: dict[str, str]
    exclude: tuple[str, ...] = ()

    def args(self) -> list[str]:
        skip_unit_tests = list(SKIP_UNIT_TESTS) if self.command == "build" else []
        return [
            self.command,
            "--select",
            *self.select,
            *(["--exclude", *self.exclude] if self.exclude else []),
            *skip_unit_tests,
            "--vars",
            json.dumps(self.vars, sort_keys=True),
        ]


@dataclass(frozen=True)
class DailyPlan:
    """What a daily run builds: its window, and earlier days that late events arrived for."""

    window: Window
    extra_days: tuple[date, ...]
    started_at: datetime

    def invocation(self) -> DbtInvocation:
        return DbtInvocation(
            "build", DAILY_SELECT, daily_vars(self.window.start, self.window.end, self.extra_days)
        )


def plan_daily(window: Window, settings: Settings | None = None) -> DailyPlan:
    """The days to build: the window, and every earlier day already built that has events
    the deduplication has not seen yet (late events), so they are never left out.

    On the `spark` target the arrivals live in Spark, so late days are not looked for:
    rebuild them with a window that covers them (README.md, Spark)."""
    settings = settings or get_settings()
    with connect(settings) as conn:
        started_at = conn.execute("select now()").fetchone()[0]  # type: ignore[index]
        built = conn.execute(
            "select to_regclass('intermediate.int_events_arrivals') is not null"
        ).fetchone()
        late = []
        if built and built[0] and settings.dbt_target == "postgres":
            late = conn.execute(
                """select distinct cast(e.event_ts as date)
                   from raw.events e
                   -- one index lookup per candidate, never a hash of every arrival
                   left join lateral (
                       select 1 as found from intermediate.int_events_arrivals a
                       where a.event_seq = e.event_seq limit 1
                   ) as seen on true
                   where e.received_at >= (
                           select coalesce(max(received_at), '-infinity')
                           from intermediate.int_events_arrivals
                           where event_seq = (select max(event_seq)
                                              from intermediate.int_events_arrivals))
                         - make_interval(hours => %(lookback)s)
                     and e.event_ts < %(start)s::date::timestamptz
                     and seen.found is null
                     and exists (select 1 from app.pipeline_runs r
                                 where r.kind = 'daily'
                                   and r.window_start <= cast(e.event_ts as date))
                   order by 1""",
                {"start": window.start, "lookback": DEDUP_LOOKBACK_HOURS},
            ).fetchall()
    return DailyPlan(window, tuple(row[0] for row in late), started_at)


def record_run(
    kind: str,
    window: Window,
    started_at: datetime,
    extra_days: tuple[date, ...] = (),
    settings: Settings | None = None,
) -> None:
    with connect(settings) as conn:
        conn.execute(
            """insert into app.pipeline_runs (kind, window_start, window_end, extra_days,
                                              received_through, started_at)
               values (%s, %s, %s, %s, %s, %s)""",
            (kind, window.start, window.end, list(extra_days), started_at, started_at),
        )


def _daily_marts_built(settings: Settings | None = None) -> bool:
    settings = settings or get_settings()
    if settings.dbt_target == "spark":
        from warehouse.spark import tables_exist

        return tables_exist(settings, "marts.fct_usage_daily", "marts.fct_unbilled_usage")
    with connect(settings) as conn:
        row = conn.execute(
            """select to_regclass('marts.fct_usage_daily') is not null
                      and to_regclass('marts.fct_unbilled_usage') is not null"""
        ).fetchone()
    return bool(row and row[0])


def monthly_invocation(window: Window, settings: Settings | None = None) -> DbtInvocation:
    select = MONTHLY_SELECT + (RECONCILIATION if _daily_marts_built(settings) else ())
    return DbtInvocation("build", select, monthly_vars(window.start, window.end))


def finalized_refresh(
    month_vars: dict[str, str], settings: Settings | None = None
) -> DbtInvocation:
    """After finalizing: rebuild the invoice lines, which now read the frozen copies, and the
    views over them (a view is dropped with the table it reads)."""
    exclude = () if _daily_marts_built(settings) else RECONCILIATION
    return DbtInvocation("run", ("fct_invoice_lines+",), month_vars, exclude)


def dbt_executable() -> str:
    """`billing-dbt` (orchestration.dbt_run) of this environment, next to the running
    Python, else the one on PATH."""
    candidate = Path(sys.executable).parent / "billing-dbt"
    return str(candidate) if candidate.exists() else "billing-dbt"


def dbt_process_env(settings: Settings | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(dbt_env(settings))
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    env["DBT_PROFILES_DIR"] = str(DBT_PROJECT_DIR)
    env["DBT_PROJECT_DIR"] = str(DBT_PROJECT_DIR)
    return env


def run_dbt(args: Sequence[str], settings: Settings | None = None, *, quiet: bool = False) -> None:
    """Run one dbt command against the configured warehouse; raise PipelineError on failure."""
    command = [
        dbt_executable(),
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
    ]
    result = subprocess.run(
        command,
        env=dbt_process_env(settings or get_settings()),
        cwd=DBT_PROJECT_DIR,
        capture_output=quiet,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        detail = ((result.stdout or "") + (result.stderr or ""))[-4000:] if quiet else ""
        raise PipelineError(f"dbt {' '.join(args[:1])} failed (exit {result.returncode})\n{detail}")


def prepare_target(settings: Settings | None = None) -> None:
    """Before a run on Spark: copy the sources there from PostgreSQL, where they land (unless
    BILLING_SPARK_COPY_SOURCES=false says they are Spark tables already)."""
    settings = settings or get_settings()
    if settings.dbt_target == "spark" and settings.spark_copy_sources:
        from warehouse.spark import SparkLoadError, copy_sources

        try:
            copy_sources(settings)
        except SparkLoadError as exc:
            raise PipelineError(str(exc)) from exc


def require_postgres_to_finalize(settings: Settings | None = None) -> None:
    if (settings or get_settings()).dbt_target != "postgres":
        raise PipelineError(
            "finalize on the postgres target: the frozen invoices are the PostgreSQL "
            "warehouse's, and a Spark build reads them from there"
        )


def run_daily(first_day: date, last_day: date, *, quiet: bool = False) -> DailyPlan:
    """Build daily usage for first_day..last_day and for the days late events arrived for."""
    plan = plan_daily(days_window(first_day, last_day))
    prepare_target()
    run_dbt(plan.invocation().args(), quiet=quiet)
    record_run("daily", plan.window, plan.started_at, plan.extra_days)
    return plan


def run_monthly(month: date, *, finalize: bool = False, quiet: bool = False) -> DbtInvocation:
    """Compute the month's invoices; with ``finalize``, freeze its drafts afterwards."""
    if finalize:
        require_postgres_to_finalize()
    window = month_window(month)
    invocation = monthly_invocation(window)
    started_at = datetime.now(UTC)
    prepare_target()
    run_dbt(invocation.args(), quiet=quiet)
    record_run("monthly", window, started_at)
    if finalize:
        finalize_month(window.start)
        # the marts now read the frozen copies, with status `finalized`
        run_dbt(finalized_refresh(invocation.vars).args(), quiet=quiet)
    return invocation


def finalize_month(month: date, settings: Settings | None = None) -> int:
    """Freeze the month's draft invoices and their lines; return how many were frozen.

    A frozen invoice never changes: later usage for its month is billed as adjustments.
    """
    with connect(settings) as conn, conn.transaction():
        conn.execute("lock table app.finalized_invoices in share row exclusive mode")
        frozen = conn.execute(
            """insert into app.finalized_invoices
                   (invoice_id, tenant_id, currency, period_start, period_end, subtotal_minor,
                    tax_minor, total_minor)
               select invoice_id, tenant_id, currency, period_start, period_end,
                      subtotal_minor, tax_minor, total_minor
               from marts.fct_invoices
               where period_start = %(month)s::date::timestamptz and status = 'draft'
               returning invoice_id""",
            {"month": month},
        ).fetchall()
        conn.execute(
            """insert into app.finalized_invoice_lines
                   (invoice_id, line_id, tenant_id, line_type, metric, plan_key, quantity,
                    billable_quantity, amount_minor, currency, description, service_start,
                    service_end, period_start, corrected_period_start)
               select l.invoice_id, l.line_id, l.tenant_id, l.line_type, l.metric, l.plan,
                      l.quantity, l.billable_quantity, l.amount_minor, l.currency,
                      l.description, l.service_start, l.service_end, l.period_start,
                      l.corrected_period_start
               from marts.fct_invoice_lines l
               where l.invoice_id = any(%(ids)s)""",
            {"ids": [row[0] for row in frozen]},
        )
    return len(frozen)
