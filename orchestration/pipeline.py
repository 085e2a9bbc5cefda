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
from datetime import date
from pathlib import Path

from orchestration.dbt_vars import Window, daily_vars, days_window, month_window, monthly_vars
from warehouse.db import dbt_env
from warehouse.settings import Settings, get_settings

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"

# The partitioned models: daily ones are built a UTC day at a time, monthly ones a calendar
# month at a time; every other model is unpartitioned. A run also builds what its models
# need upstream (the `+`), so the CLI never depends on an earlier run of another kind.
DAILY_MODELS = ("fct_usage_daily",)
MONTHLY_MODELS = (
    "int_subscription_segments",
    "int_segment_usage_aggregated",
    "int_invoice_lines_priced",
    "fct_invoice_lines",
    "fct_invoices",
)
DAILY_SELECT = (
    "+fct_usage_daily",
    "+fct_event_conflicts",
    "+fct_unbilled_usage",
    "+dim_tenants",
    "+dim_plans",
)
MONTHLY_SELECT = ("+fct_invoices",)


class PipelineError(RuntimeError):
    """dbt failed; the message says which command."""


@dataclass(frozen=True)
class DbtInvocation:
    command: str
    select: tuple[str, ...]
    vars: dict[str, str]

    def args(self) -> list[str]:
        return [
            self.command,
            "--select",
            *self.select,
            "--vars",
            json.dumps(self.vars, sort_keys=True),
        ]


def daily_invocation(window: Window) -> DbtInvocation:
    return DbtInvocation("build", DAILY_SELECT, daily_vars(window.start, window.end))


def monthly_invocation(window: Window) -> DbtInvocation:
    return DbtInvocation("build", MONTHLY_SELECT, monthly_vars(window.start, window.end))


def dbt_executable() -> str:
    """The dbt of this environment (next to the running Python), else the one on PATH."""
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


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
        detail = (result.stdout or "")[-4000:] if quiet else ""
        raise PipelineError(f"dbt {' '.join(args[:1])} failed (exit {result.returncode})\n{detail}")


def run_daily(first_day: date, last_day: date, *, quiet: bool = False) -> DbtInvocation:
    invocation = daily_invocation(days_window(first_day, last_day))
    run_dbt(invocation.args(), quiet=quiet)
    return invocation


def run_monthly(month: date, *, quiet: bool = False) -> DbtInvocation:
    invocation = monthly_invocation(month_window(month))
    run_dbt(invocation.args(), quiet=quiet)
    return invocation
