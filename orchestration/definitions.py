"""The one Dagster ``Definitions``: dbt models as assets, partitions and schedules.

Nothing here reads the environment or parses dbt at import: the manifest is built ahead of
time (`make manifest`) and the warehouse is resolved when an asset runs.
"""

import json
import os
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    DailyPartitionsDefinition,
    Definitions,
    MonthlyPartitionsDefinition,
    build_schedule_from_partitioned_job,
    define_asset_job,
)
from dagster_dbt import DbtCliResource, dbt_assets

from orchestration.dbt_vars import daily_vars, monthly_vars
from orchestration.pipeline import (
    DAILY_MODELS,
    DBT_PROJECT_DIR,
    MANIFEST_PATH,
    MONTHLY_MODELS,
    dbt_executable,
    dbt_process_env,
)

PARTITIONS_START = "2026-01-01"
daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC")
monthly_partitions = MonthlyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC")


def _dbt_build(
    context: AssetExecutionContext, dbt: DbtCliResource, dbt_vars: dict[str, str] | None
) -> Iterator[Any]:
    # The warehouse connection is resolved here, at run time, never at import.
    os.environ.update(dbt_process_env())
    args = ["build"]
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
    window = context.partition_time_window
    yield from _dbt_build(context, dbt, daily_vars(window.start, window.end))


@dbt_assets(
    manifest=MANIFEST_PATH,
    select=" ".join(MONTHLY_MODELS),
    partitions_def=monthly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    name="monthly_invoice_models",
)
def monthly_invoice_models(context: AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
    window = context.partition_time_window
    yield from _dbt_build(context, dbt, monthly_vars(window.start, window.end))


@dbt_assets(
    manifest=MANIFEST_PATH,
    exclude=" ".join((*DAILY_MODELS, *MONTHLY_MODELS)),
    name="unpartitioned_models",
)
def unpartitioned_models(context: AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
    yield from _dbt_build(context, dbt, None)


daily_job = define_asset_job("daily_usage", selection=[daily_usage_models])
monthly_job = define_asset_job("monthly_invoices", selection=[monthly_invoice_models])

# Each run builds the partition that has just closed: yesterday at 01:00 UTC, last month at
# 02:00 UTC on the 1st.
daily_schedule = build_schedule_from_partitioned_job(
    daily_job, name="daily_usage_0100_utc", hour_of_day=1
)
monthly_schedule = build_schedule_from_partitioned_job(
    monthly_job, name="monthly_invoices_0200_utc_on_1st", hour_of_day=2, day_of_month=1
)

defs = Definitions(
    assets=[unpartitioned_models, daily_usage_models, monthly_invoice_models],
    jobs=[daily_job, monthly_job],
    schedules=[daily_schedule, monthly_schedule],
    resources={
        "dbt": DbtCliResource(
            project_dir=str(DBT_PROJECT_DIR),
            profiles_dir=str(DBT_PROJECT_DIR),
            dbt_executable=dbt_executable(),
        )
    },
)
