"""`billing-dbt`, the command Dagster's assets run, hands dbt's commands to a warm worker:
one process for many commands, each with its own output, exit code and environment, ended
when idle."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from orchestration.dbt_worker import WORKER_ENV, metastore_holder
from orchestration.pipeline import DBT_PROJECT_DIR, dbt_env, dbt_executable
from tests.helpers import wait_ended, worker_starts
from warehouse.migrate import apply_migrations
from warehouse.settings import get_settings

pytestmark = pytest.mark.slow
SELECT = ["--select", "+fct_usage_daily", "--exclude-resource-type", "unit_test"]


def ignore_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def billing_dbt(
    args: list[str], env: dict[str, str], *, ignoring_sigterm: bool = False
) -> subprocess.CompletedProcess[str]:
    """As dagster-dbt runs it: a process, dbt's JSON log lines on stdout."""
    return subprocess.run(
        [dbt_executable(), *args],
        env=env,
        cwd=DBT_PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=ignore_sigterm if ignoring_sigterm else None,
    )


@pytest.mark.minutes(0.25)
def test_commands_share_one_warm_worker_with_their_own_output_and_exit(
    warehouse: str, sockets: Path
) -> None:
    with psycopg.connect(warehouse) as conn:
        apply_migrations(conn)
    env = {
        **os.environ,
        **dbt_env(),
        "XDG_RUNTIME_DIR": str(sockets),
        "BILLING_DBT_WORKER_IDLE": "3",
        "DBT_LOG_FORMAT": "json",
    }
    good = billing_dbt(["build", *SELECT, "--vars", json.dumps({"min_date": "2026-10-01"})], env)
    assert good.returncode == 0, good.stdout + good.stderr
    events = [json.loads(line) for line in good.stdout.splitlines()]
    assert any(e["info"]["name"] == "LogModelResult" for e in events)  # streamed, as JSON

    started = time.perf_counter()
    bad = billing_dbt(["build", *SELECT, "--vars", json.dumps({"min_date": "not-a-day"})], env)
    warm = time.perf_counter() - started
    assert bad.returncode == 1
    assert "not-a-day" in bad.stdout + bad.stderr  # PostgreSQL's error about the var's cast

    # each command in its caller's environment: this one's log as text
    missing = billing_dbt(
        ["run-operation", "no_such_macro", "--vars", "{}"], {**env, "DBT_LOG_FORMAT": "text"}
    )
    assert missing.returncode == 2  # dbt could not run it
    assert "no_such_macro" in missing.stdout and not missing.stdout.startswith("{")

    assert len(worker_starts(sockets)) == 1  # one worker served all three
    (log,) = sockets.glob("billing-dbt-*/*.log")
    assert warm < 30, warm  # sanity only: speed is measured in bench/

    # idle, it ends and takes its socket along; the next command starts another
    deadline = time.monotonic() + 30
    while list(sockets.glob("billing-dbt-*/*.sock")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not list(sockets.glob("billing-dbt-*/*.sock"))
    assert "ended" in log.read_text()
    # started by a process that ignores SIGTERM, as a Dagster run leaves one that was
    # started in the background (its SIGTERM gets SIGINT's handler: there, "ignore"), the
    # worker still ends on SIGTERM, its JVM on Spark with it
    again = billing_dbt(
        ["ls", "--select", "fct_usage_daily", "--vars", "{}"],
        {**env, "BILLING_DBT_WORKER_IDLE": "120"},  # it would not end of itself meanwhile
        ignoring_sigterm=True,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    starts = worker_starts(sockets)
    assert len(starts) == 2
    pid = int(starts[-1].split()[2])
    os.kill(pid, signal.SIGTERM)
    wait_ended([pid], timeout=10)


def test_version_is_answered_without_starting_dbt() -> None:
    result = subprocess.run(
        [dbt_executable(), "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("Core:\n  - installed: 1.11.")


def test_without_the_worker_spark_refuses_clearly_while_a_spark_worker_lives(
    sockets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Spark worker's JVM holds the local metastore: a command with the worker turned off
    says so, instead of failing deep in Hive's start in a JVM of its own."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(sockets))
    monkeypatch.setenv("BILLING_HOME", str(tmp_path / "home"))
    # refused before any connection: no warehouse (an embedded one would outlive the test)
    monkeypatch.setenv("BILLING_DATABASE_URL", "postgresql://billing@127.0.0.1:9/unused")
    monkeypatch.setenv("BILLING_DBT_TARGET", "spark")
    get_settings.cache_clear()
    for name, value in {**dbt_env(), WORKER_ENV: "false"}.items():
        monkeypatch.setenv(name, value)
    # the worker of an older project state (the project edited since) holds it
    path = sockets / f"billing-dbt-{os.getuid()}" / "older-project-state.sock"
    path.parent.mkdir(mode=0o700)
    metastore_holder(path.parent).write_text(str(path))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as alive:  # the worker, listening
        alive.bind(str(path))
        alive.listen()
        for command in (
            [dbt_executable(), "build", "--project-dir", str(DBT_PROJECT_DIR)],
            [sys.executable, "-m", "warehouse.spark", "--query", "select 1"],
        ):
            refused = subprocess.run(
                command, capture_output=True, text=True, timeout=120, check=False
            )
            assert refused.returncode == 2, refused.stdout + refused.stderr
            assert "holds the local Spark metastore" in refused.stderr
