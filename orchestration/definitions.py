"""The one Dagster ``Definitions``: dbt models as assets, partitions and schedules.

Nothing here reads the environment or parses dbt at import: the manifest is built ahead of
time (`make manifest`) and the warehouse is resolved when an asset runs.
"""

import json
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    DailyPartitionsDefinition,
    Definitions,
    Failure,
    MaterializeResult,
    MonthlyPartitionsDefinition,
    asset,
    asset_check,
    build_schedule_from_partitioned_job,
    build_sensor_for_freshness_checks,
    build_time_partition_freshness_checks,
    define_asset_job,
)
from dagster_dbt import DbtCliResource, dbt_assets

from orchestration.checks import reconcile_month
from orchestration.dbt_vars import Window, month_starts, month_window, monthly_vars
from orchestration.pipeline import (
    DAILY_MODELS,
    DBT_PROJECT_DIR,
    MANIFEST_PATH,
    MONTHLY_MODELS,
    SKIP_UNIT_TESTS,
    dbt_executable,
    dbt_process_env,
    finalize_month,
    finalized_refresh,
    plan_daily,
    prepare_target,
    record_run,
    require_postgres_to_finalize,
)
from sync.stripe_push import PushReport, PushResult, push_invoices
from warehouse.db import connect
from warehouse.settings import get_settings

PARTITIONS_START = "2026-01-01"
FINALIZE_TAG = "billing/finalize"
daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC")
monthly_partitions = MonthlyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC")


def _dbt_build(
    context: AssetExecutionContext, dbt: DbtCliResource, dbt_vars: dict[str, Any] | None
) -> Iterator[Any]:
    # The warehouse connection is resolved here, at run time, never at import; on the
    # `spark` target (BILLING_DBT_TARGET) the sources are copied there first.
    os.environ.update(dbt_process_env())
    prepare_target()
    args = ["build", *SKIP_UNIT_TESTS]
    if dbt_vars:
        args += ["--vars", json.dumps(dbt_vars, sort_keys=True)]
    yield from dbt.cli(args, context=context).stream()


@dbt_assets(
    manifest=MANIFEST_PATH,
    select=" ".join(DAILY_MODELS),
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    name="daily_usage_models",
)
def daily_usage_models(context: AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
    # the same plan as `billing run daily`: the partitions, and the days late events hit
    window = context.partition_time_window
    plan = plan_daily(Window(window.start.date(), window.end.date()))
    if plan.extra_days:
        context.log.info(f"late events: also rebuilding {', '.join(map(str, plan.extra_days))}")
    yield from _dbt_build(context, dbt, plan.invocation().vars)
    record_run("daily", plan.window, plan.started_at, plan.extra_days)


@dbt_assets(
    manifest=MANIFEST_PATH,
    select=" ".join(MONTHLY_MODELS),
    partitions_def=monthly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    name="monthly_invoice_models",
)
def monthly_invoice_models(context: AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
    # the same steps as `billing run monthly [--finalize]`
    window = context.partition_time_window
    month_vars = monthly_vars(window.start, window.end)
    started_at = datetime.now(UTC)
    yield from _dbt_build(context, dbt, month_vars)
    record_run("monthly", month_window(window.start.date()), started_at)
    if context.run.tags.get(FINALIZE_TAG) == "true":
        # the monthly schedule closes the month: freeze its invoices, as --finalize does
        require_postgres_to_finalize()
        frozen = finalize_month(window.start.date())
        context.log.info(f"finalized {frozen} invoices of {window.start:%Y-%m}")
        os.environ.update(dbt_process_env())
        refresh = finalized_refresh(month_vars).args()
        dbt.cli(refresh, context=context, raise_on_error=True).wait()


@dbt_assets(
    manifest=MANIFEST_PATH,
    exclude=" ".join((*DAILY_MODELS, *MONTHLY_MODELS)),
    name="unpartitioned_models",
)
def unpartitioned_models(context: AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
    yield from _dbt_build(context, dbt, None)


FCT_INVOICES = AssetKey(["marts", "fct_invoices"])


@asset(
    key=AssetKey(["stripe", "invoices"]),
    deps=[FCT_INVOICES],
    partitions_def=monthly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="stripe",
    description="The month's finalized invoices pushed to Stripe, each exactly once "
    "(the same code as `billing sync stripe --month`).",
)
def stripe_invoices(context: AssetExecutionContext) -> MaterializeResult:
    window = context.partition_time_window
    months = month_starts(window.start.date(), window.end.date())
    label = f"{months[0]:%Y-%m}" + (f"..{months[-1]:%Y-%m}" if len(months) > 1 else "")
    if get_settings().stripe_api_key is None:
        context.log.warning("BILLING_STRIPE_API_KEY is not set: no invoice was pushed")
        return MaterializeResult(metadata={"months": label, "stripe": "not configured"})

    def log(result: PushResult) -> None:
        line = f"{result.outcome} {result.invoice_id} {result.provider_invoice_id or ''}"
        (context.log.error if result.outcome == "failed" else context.log.info)(
            f"{line} {result.message}".strip()
        )

    def count(total: int) -> None:
        context.log.info(f"{total} finalized invoices")

    report = PushReport()
    for month in months:  # a backfill pushes its months in one run
        report.results += push_invoices(month, on_start=count, on_result=log).results
    metadata: dict[str, str | int] = {
        "months": label,
        "pushed": report.count("pushed"),
        "skipped": report.count("skipped"),
        "failed": report.count("failed"),
    }
    if report.failed:
        first = report.failed[0]
        raise Failure(
            description=f"{report.summary()}; first: {first.invoice_id}: {first.message}",
            metadata=metadata,
        )
    context.log.info(report.summary())
    return MaterializeResult(metadata=metadata)


daily_job = define_asset_job("daily_usage", selection=[daily_usage_models])
# the monthly run builds the invoices, finalizes them when scheduled, then pushes them
monthly_job = define_asset_job(
    "monthly_invoices", selection=[monthly_invoice_models, stripe_invoices]
)

# Each run builds the partition that has just closed: yesterday at 01:00 UTC, last month at
# 02:00 UTC on the 1st.
daily_schedule = build_schedule_from_partitioned_job(
    daily_job, name="daily_usage_0100_utc", hour_of_day=1
)
monthly_schedule = build_schedule_from_partitioned_job(
    monthly_job,
    name="monthly_invoices_0200_utc_on_1st",
    hour_of_day=2,
    day_of_month=1,
    tags={FINALIZE_TAG: "true"},
)


@asset_check(asset=FCT_INVOICES, description="Invoiced usage equals metered usage for the month")
def invoices_reconcile_with_daily_usage(context: AssetCheckExecutionContext) -> AssetCheckResult:
    """Additive usage on the month's invoices against fct_usage_daily, less unbilled usage."""
    month = date.today().replace(day=1)
    if context.has_partition_key:
        month = monthly_partitions.time_window_for_partition_key(context.partition_key).start.date()
    with connect() as conn:
        mismatches = reconcile_month(conn, month)
    return AssetCheckResult(
        passed=not mismatches,
        metadata={"month": str(month), "mismatches": len(mismatches), "first": str(mismatches[:5])},
    )


invoice_freshness = build_time_partition_freshness_checks(
    assets=[FCT_INVOICES], deadline_cron="0 6 1 * *", timezone="UTC"
)
freshness_sensor = build_sensor_for_freshness_checks(freshness_checks=invoice_freshness)

dbt_resource = DbtCliResource(
    project_dir=str(DBT_PROJECT_DIR),
    profiles_dir=str(DBT_PROJECT_DIR),
    dbt_executable=dbt_executable(),
)

defs = Definitions(
    assets=[unpartitioned_models, daily_usage_models, monthly_invoice_models, stripe_invoices],
    jobs=[daily_job, monthly_job],
    schedules=[daily_schedule, monthly_schedule],
    asset_checks=[invoices_reconcile_with_daily_usage, *invoice_freshness],
    sensors=[freshness_sensor],
    resources={"dbt": dbt_resource},
)
