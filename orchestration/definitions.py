"""The one Dagster ``Definitions``: dbt models as assets, partitions and schedules.

Nothing here reads the environment or parses dbt at import: the manifest is built ahead of
time (`make manifest`) and the warehouse is resolved when an asset runs.
"""

import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    DailyPartitionsDefinition,
    Definitions,
    Failure,
    FreshnessPolicy,
    MaterializeResult,
    MonthlyPartitionsDefinition,
    OpExecutionContext,
    ScheduleDefinition,
    asset,
    asset_check,
    build_schedule_from_partitioned_job,
    define_asset_job,
    in_process_executor,
    job,
    op,
)
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from orchestration.checks import reconcile_month
from orchestration.dbt_vars import Window, current_month, month_starts
from orchestration.pipeline import (
    DAILY,
    DBT_PROJECT_DIR,
    MANIFEST_PATH,
    MONTHLY,
    Build,
    DbtInvocation,
    daily_steps,
    dbt_env,
    dbt_executable,
    monthly_steps,
    push_steps,
)
from sync.stripe_push import PushResult
from warehouse.db import connect
from warehouse.settings import get_settings

PARTITIONS_START = "2026-01-01"
FINALIZE_TAG = "billing/finalize"
daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC")
monthly_partitions = MonthlyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC")


def streamed(context: AssetExecutionContext, dbt: DbtCliResource) -> Build:
    """How an asset builds its selection: dbt's events become its materializations and asset
    checks. dbt writes its artifacts to a scratch directory removed after the run (the
    parse state stays in the project's target: orchestration/dbt_run.py)."""

    def build(invocation: DbtInvocation) -> Iterator[Any]:
        # The warehouse connection is resolved here, at run time, never at import.
        os.environ.update(dbt_env())
        scratch = get_settings().private_dir("dagster") / "dbt"
        scratch.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch) as target:
            yield from dbt.cli(
                invocation.args(), context=context, target_path=Path(target)
            ).stream()

    return build


# When each run's models are due: the daily run's by 05:00 UTC each day (its schedule starts
# at 01:00), the monthly run's by 06:00 UTC on the 1st (its schedule starts at 02:00).
FRESHNESS = {
    DAILY: FreshnessPolicy.cron(deadline_cron="0 5 * * *", lower_bound_delta=timedelta(hours=4)),
    MONTHLY: FreshnessPolicy.cron(deadline_cron="0 6 1 * *", lower_bound_delta=timedelta(hours=4)),
}


class BillingTranslator(DagsterDbtTranslator):
    """A dbt model is due when the run that builds it (its meta.run) is."""

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        run = self.get_resource_props(manifest, unique_id).get("meta", {}).get("run")
        if run not in FRESHNESS:
            return spec
        return spec.replace_attributes(freshness_policy=FRESHNESS[run])


def window_of(context: AssetExecutionContext) -> Window:
    window = context.partition_time_window
    return Window(window.start.date(), window.end.date())


@dbt_assets(
    manifest=MANIFEST_PATH,
    selector=DAILY,
    dagster_dbt_translator=BillingTranslator(),
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    name="daily_usage_models",
)
def daily_usage_models(context: AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
    """`billing run daily` for the partitions' days."""
    plan = yield from daily_steps(window_of(context), streamed(context, dbt))
    if plan.extra_days:
        context.log.info(f"late events: also rebuilt {', '.join(map(str, plan.extra_days))}")


@dbt_assets(
    manifest=MANIFEST_PATH,
    selector=MONTHLY,
    dagster_dbt_translator=BillingTranslator(),
    partitions_def=monthly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    name="monthly_invoice_models",
)
def monthly_invoice_models(context: AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
    """`billing run monthly` for the partitions' months; the monthly schedule's runs (tagged
    to finalize) close them, as `--finalize` does."""
    finalize = context.run.tags.get(FINALIZE_TAG) == "true"
    outcome = yield from monthly_steps(
        window_of(context), streamed(context, dbt), finalize=finalize, quiet=True
    )
    if outcome.catch_up.window or outcome.catch_up.extra_days:
        built = outcome.catch_up
        context.log.info(f"days built first: {built.window}, late days {built.extra_days}")
    if finalize:
        context.log.info(f"finalized {outcome.finalized} invoices")


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
    window = window_of(context)
    months = month_starts(window.start, window.end)
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

    report = push_steps(window, on_start=count, on_result=log)
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


@op(description="One delivery pass of the outbound webhooks (`billing webhooks deliver`).")
def deliver_webhooks(context: OpExecutionContext) -> None:
    from sync.webhooks_out import deliver

    context.log.info(deliver().summary())


@job(description="Deliver the outbound webhooks that are due.")
def webhook_deliveries() -> None:
    deliver_webhooks()


# every minute: a failed delivery is retried after 10 s, 20 s, 40 s... up to an hour
webhook_schedule = ScheduleDefinition(
    job=webhook_deliveries,
    name="webhook_deliveries_every_minute",
    cron_schedule="* * * * *",
    execution_timezone="UTC",
)


@asset_check(asset=FCT_INVOICES, description="Invoiced usage equals metered usage for the month")
def invoices_reconcile_with_daily_usage(context: AssetCheckExecutionContext) -> AssetCheckResult:
    """Additive usage on the month's invoices against fct_usage_daily, less unbilled usage."""
    month = current_month()
    if context.has_partition_key:
        month = monthly_partitions.time_window_for_partition_key(context.partition_key).start.date()
    with connect() as conn:
        mismatches = reconcile_month(conn, month)
    return AssetCheckResult(
        passed=not mismatches,
        metadata={"month": str(month), "mismatches": len(mismatches), "first": str(mismatches[:5])},
    )


class BillingDbtResource(DbtCliResource):
    """dagster-dbt's resource, without the dbt adapter it opens in the run's process before
    each command (it loads every macro, about 1.4 s): the adapter serves only the column
    metadata and row counts our assets do not ask for. The command itself runs warm in
    `billing-dbt`'s worker (orchestration/dbt_worker.py)."""

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return None


dbt_resource = BillingDbtResource(
    project_dir=str(DBT_PROJECT_DIR),
    profiles_dir=str(DBT_PROJECT_DIR),
    dbt_executable=dbt_executable(),
)

# Every step of a run in the run's own process. Dagster's default starts a process per step
# (importing Dagster and this module again: about 2.5 s of CPU a step) so that independent
# steps run side by side; ours never are (one dbt command, then the push and the check that
# need it), and the webhook deliveries run every minute.
defs = Definitions(
    executor=in_process_executor,
    assets=[daily_usage_models, monthly_invoice_models, stripe_invoices],
    jobs=[daily_job, monthly_job, webhook_deliveries],
    schedules=[daily_schedule, monthly_schedule, webhook_schedule],
    asset_checks=[invoices_reconcile_with_daily_usage],
    resources={"dbt": dbt_resource},
)
