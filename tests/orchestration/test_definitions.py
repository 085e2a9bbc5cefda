"""The Dagster Definitions load from the prebuilt manifest: every dbt model is an asset,
partitioned by the run that builds it (its `meta.run`), and in a job a schedule runs."""

from __future__ import annotations

import json

from dagster import AssetKey

from orchestration.pipeline import MANIFEST_PATH


def models() -> dict[str, dict]:  # type: ignore[type-arg]
    manifest = json.loads(MANIFEST_PATH.read_text())
    return {
        unique_id: node
        for unique_id, node in manifest["nodes"].items()
        if node["resource_type"] == "model"
    }


def test_every_model_is_built_by_one_run_and_no_daily_model_reads_a_monthly_one() -> None:
    found = models()
    runs = {unique_id: node["config"]["meta"].get("run") for unique_id, node in found.items()}
    assert set(runs.values()) == {"daily", "monthly"}, runs
    for unique_id, node in found.items():
        if runs[unique_id] == "daily":
            upstream = [n for n in node["depends_on"]["nodes"] if n in runs]
            assert all(runs[n] == "daily" for n in upstream), (unique_id, upstream)


def test_definitions_hold_every_model_partitions_and_schedules() -> None:
    from orchestration.definitions import daily_partitions, defs, monthly_partitions

    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    assert AssetKey(["raw", "events"]) in keys
    expected = {"daily": daily_partitions, "monthly": monthly_partitions}
    scheduled = {
        key
        for schedule in defs.schedules  # type: ignore[union-attr]
        for job in [defs.resolve_schedule_def(schedule.name).job]
        for key in job.asset_layer.selected_asset_keys
    }
    for node in models().values():
        key = AssetKey([node["schema"], node["name"]])
        assert key in keys, node["name"]
        # partitioned by the run that builds it, and built by a scheduled job
        assert graph.get(key).partitions_def == expected[node["config"]["meta"]["run"]], key
        assert key in scheduled, key
        # due when its run is: by 05:00 UTC each day, by 06:00 UTC on the 1st
        policy = graph.get(key).freshness_policy
        deadline = {"daily": "0 5 * * *", "monthly": "0 6 1 * *"}[node["config"]["meta"]["run"]]
        assert policy is not None and policy.deadline_cron == deadline, key

    names = [s.name for s in defs.schedules]  # type: ignore[union-attr]
    crons = {
        name: (schedule.cron_schedule, schedule.execution_timezone)
        for name in names
        for schedule in [defs.resolve_schedule_def(name)]
    }
    assert crons == {
        "daily_usage_0100_utc": ("0 1 * * *", "UTC"),
        "monthly_invoices_0200_utc_on_1st": ("0 2 1 * *", "UTC"),
        "webhook_deliveries_every_minute": ("* * * * *", "UTC"),
    }
