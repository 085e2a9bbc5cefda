"""The Dagster Definitions load from the prebuilt manifest and hold every dbt model."""

from __future__ import annotations

import json

from dagster import AssetKey

from orchestration.pipeline import MANIFEST_PATH


def test_definitions_hold_every_model_partitions_and_schedules() -> None:
    from orchestration.definitions import daily_partitions, defs, monthly_partitions

    manifest = json.loads(MANIFEST_PATH.read_text())
    models = {
        (node["schema"], node["name"])
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model"
    }
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    for schema, name in models:
        assert AssetKey([schema, name]) in keys, name
    assert AssetKey(["raw", "events"]) in keys

    def partitions(name: str) -> object:
        return graph.get(AssetKey(["marts", name])).partitions_def

    assert partitions("fct_usage_daily") == daily_partitions
    assert partitions("fct_invoices") == monthly_partitions
    assert partitions("dim_tenants") is None

    names = [s.name for s in defs.schedules]
    crons = {
        name: (schedule.cron_schedule, schedule.execution_timezone)
        for name in names
        for schedule in [defs.resolve_schedule_def(name)]
    }
    assert crons == {
        "daily_usage_0100_utc": ("0 1 * * *", "UTC"),
        "monthly_invoices_0200_utc_on_1st": ("0 2 1 * *", "UTC"),
    }
