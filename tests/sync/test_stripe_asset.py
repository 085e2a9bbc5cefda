"""The Stripe push as a Dagster asset, downstream of the invoices."""

from __future__ import annotations

import pytest
from dagster import AssetKey, materialize

from orchestration.definitions import FCT_INVOICES, defs, stripe_invoices
from tests.fake_stripe import API_KEY, FakeStripeServer
from tests.sync.conftest import BROKEN, insert_finalized
from warehouse.settings import get_settings


def test_the_asset_sits_downstream_of_the_invoices_in_the_monthly_job() -> None:
    graph = defs.resolve_asset_graph()
    assert FCT_INVOICES in graph.get(AssetKey(["stripe", "invoices"])).parent_keys
    job = defs.resolve_job_def("monthly_invoices")
    assert AssetKey(["stripe", "invoices"]) in job.asset_layer.selected_asset_keys


def test_the_asset_pushes_the_partition_month(
    finalized: str, stripe_server: FakeStripeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BILLING_STRIPE_API_KEY", API_KEY)
    monkeypatch.setenv("BILLING_STRIPE_API_BASE", stripe_server.url)
    get_settings.cache_clear()
    result = materialize([stripe_invoices], partition_key="2026-10-01")
    assert result.success
    [materialization] = result.asset_materializations_for_node("stripe__invoices")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert (metadata["pushed"], metadata["skipped"], metadata["failed"]) == (2, 0, 0)
    assert stripe_server.fake.invoice_for("inv_acme_09") == []  # another month

    insert_finalized(finalized, {"inv_nocus_10": BROKEN["inv_nocus_10"]})
    failed = materialize([stripe_invoices], partition_key="2026-10-01", raise_on_error=False)
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "0 pushed, 2 skipped (already in Stripe), 1 failed" in str(failure.event_specific_data)
    assert "no stripe_customer_id" in str(failure.event_specific_data)
