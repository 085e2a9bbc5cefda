"""`dagster dev` from the repository root loads our Definitions: every asset and both
schedules are there, asked through the webserver's GraphQL API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import REPO, free_port

pytestmark = pytest.mark.slow
DAGSTER = str(Path(sys.executable).parent / "dagster")
QUERY = """
{
  assetNodes { assetKey { path } }
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes { schedules { name cronSchedule executionTimezone } sensors { name } }
    }
  }
}
"""


def test_dagster_dev_serves_assets_and_schedules(warehouse: str) -> None:
    port = free_port()
    process = subprocess.Popen(
        [DAGSTER, "dev", "--port", str(port), "--host", "127.0.0.1"],
        cwd=REPO,
        env={**os.environ, "DAGSTER_HOME": ""},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        data = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert process.poll() is None, "dagster dev exited"
            try:
                response = httpx.post(url, json={"query": QUERY}, timeout=10)
                body = response.json()
                nodes = body["data"]["repositoriesOrError"].get("nodes")
                if response.status_code == 200 and nodes:
                    data = body["data"]
                    break
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                pass
            time.sleep(1)
        assert data is not None, "the webserver did not answer with our code location"
        keys = {"/".join(node["assetKey"]["path"]) for node in data["assetNodes"]}
        assert {
            "raw/events",
            "marts/fct_usage_daily",
            "marts/fct_invoices",
            "marts/fct_invoice_lines",
            "intermediate/int_events_arrivals",
            "marts/dim_tenants",
        } <= keys
        schedules = {
            s["name"]: (s["cronSchedule"], s["executionTimezone"])
            for repo in data["repositoriesOrError"]["nodes"]
            for s in repo["schedules"]
        }
        assert schedules == {
            "daily_usage_0100_utc": ("0 1 * * *", "UTC"),
            "monthly_invoices_0200_utc_on_1st": ("0 2 1 * *", "UTC"),
        }
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
