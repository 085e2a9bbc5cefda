"""`dagster dev` from the repository root, with its daemon: every asset and the schedules are there
(the webhook deliveries' too), and a forced tick of each schedule (evaluated by the webserver,
its run requests launched and run by the daemon's queue) bills a day and closes a month, all
through the GraphQL API a user's tools would call. The runs are kept in the warehouse's
PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from dagster import DagsterEventType

from tests.helpers import REPO, free_port
from tests.orchestration.test_dagster_runs import INVOICES, USAGE, load_demo, rows

pytestmark = pytest.mark.slow
DAGSTER = str(Path(sys.executable).parent / "dagster")
OVERVIEW = """
{
  assetNodes { assetKey { path } }
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes { name location { name } schedules { name cronSchedule executionTimezone } }
    }
  }
}
"""
DRY_RUN = """
mutation ($selector: ScheduleSelector!, $timestamp: Float) {
  scheduleDryRun(selectorData: $selector, timestamp: $timestamp) {
    __typename
    ... on DryRunInstigationTick {
      evaluationResult { runRequests { tags { key value } runConfigYaml jobName }
                         skipReason error { message } }
    }
    ... on PythonError { message }
  }
}
"""
LAUNCH = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
STATUS = "query ($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }"


class DagsterDev:
    def __init__(self, url: str) -> None:
        self.url = url
        # one client for every query: a new one loads the CA certificates (bench/common.py)
        self.http = httpx.Client(timeout=60)

    def query(self, query: str, **variables: Any) -> dict[str, Any]:
        response = self.http.post(self.url, json={"query": query, "variables": variables})
        body = response.json()
        assert "errors" not in body, body
        return body["data"]  # type: ignore[no-any-return]

    def force_tick(self, repository: dict[str, str], schedule: str, at: datetime) -> str:
        """What the UI's "Test schedule" does: evaluate a tick, launch its run request."""
        tick = self.query(
            DRY_RUN,
            selector={**repository, "scheduleName": schedule},
            timestamp=at.timestamp(),
        )["scheduleDryRun"]
        assert tick["__typename"] == "DryRunInstigationTick", tick
        (request,) = tick["evaluationResult"]["runRequests"]
        launched = self.query(
            LAUNCH,
            params={
                "selector": {**repository, "jobName": request["jobName"]},
                "runConfigData": request["runConfigYaml"],
                "executionMetadata": {"tags": request["tags"]},
            },
        )["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return str(launched["run"]["runId"])

    def wait(self, run_id: str, timeout: float = 600) -> tuple[str, dict[str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.query(STATUS, id=run_id)["runOrError"]
            if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                return run["status"], {t["key"]: t["value"] for t in run["tags"]}
            time.sleep(2)
        raise TimeoutError(f"run {run_id} did not finish")


@pytest.mark.minutes(1.6)
def test_dagster_dev_serves_assets_schedules_and_runs_their_ticks(warehouse: str) -> None:
    load_demo(warehouse)
    port = free_port()
    process = subprocess.Popen(
        [DAGSTER, "dev", "--port", str(port), "--host", "127.0.0.1"],
        cwd=REPO,
        env={**os.environ, "DAGSTER_HOME": ""},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    dagster = DagsterDev(f"http://127.0.0.1:{port}/graphql")
    try:
        data = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert process.poll() is None, "dagster dev exited"
            try:
                found = dagster.query(OVERVIEW)
                if found["repositoriesOrError"].get("nodes"):
                    data = found
                    break
            except (httpx.HTTPError, ValueError, KeyError, TypeError, AssertionError):
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
            "stripe/invoices",
        } <= keys
        (repo,) = data["repositoriesOrError"]["nodes"]
        schedules = {
            s["name"]: (s["cronSchedule"], s["executionTimezone"]) for s in repo["schedules"]
        }
        assert schedules == {
            "daily_usage_0100_utc": ("0 1 * * *", "UTC"),
            "monthly_invoices_0200_utc_on_1st": ("0 2 1 * *", "UTC"),
            "webhook_deliveries_every_minute": ("* * * * *", "UTC"),
        }
        repository = {
            "repositoryName": repo["name"],
            "repositoryLocationName": repo["location"]["name"],
        }

        daily = dagster.force_tick(
            repository, "daily_usage_0100_utc", datetime(2026, 10, 2, 1, tzinfo=UTC)
        )
        assert dagster.wait(daily)[0] == "SUCCESS"
        assert {row[2].isoformat() for row in rows(warehouse, USAGE)} == {"2026-10-01"}

        monthly = dagster.force_tick(
            repository, "monthly_invoices_0200_utc_on_1st", datetime(2026, 11, 1, 2, tzinfo=UTC)
        )
        status, tags = dagster.wait(monthly)
        assert status == "SUCCESS"
        assert tags["dagster/partition"] == "2026-10-01"
        invoices = rows(warehouse, INVOICES)
        assert invoices and {row[5] for row in invoices} == {"finalized"}
        assert len({row[2] for row in rows(warehouse, USAGE)}) == 31

        # the runs live in the warehouse's PostgreSQL, not in files; each ran its steps in
        # its own process (orchestration/definitions.py: the in-process executor)
        with psycopg.connect(warehouse) as conn:
            stored = {r[0] for r in conn.execute("select run_id from dagster.runs").fetchall()}
            assert {daily, monthly} <= stored
            for run_id in (daily, monthly):
                kinds = (DagsterEventType.RUN_START.value, DagsterEventType.STEP_START.value)
                pids: dict[str, set[int]] = {kind: set() for kind in kinds}
                for kind, event in conn.execute(
                    "select dagster_event_type, event from dagster.event_logs"
                    " where run_id = %s and dagster_event_type = any(%s)",
                    (run_id, list(kinds)),
                ):
                    pids[kind].add(json.loads(event)["dagster_event"]["pid"])
                run, steps = pids.values()
                assert len(run) == 1 and steps == run, pids
    finally:
        dagster.http.close()
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
