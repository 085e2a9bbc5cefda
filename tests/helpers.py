"""Helpers for tests: run the CLI, address a database on the test server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

REPO = Path(__file__).resolve().parent.parent
BILLING = str(Path(sys.executable).parent / "billing")


def with_dbname(url: str, dbname: str) -> str:
    """The same server, another database."""
    params = conninfo_to_dict(url)
    return f"postgresql://{params.get('user', 'postgres')}@/{dbname}?host={params['host']}"


def billing(
    *args: str, env: dict[str, str] | None = None, check: bool = False, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the `billing` CLI in a subprocess with the test's environment."""
    result = subprocess.run(
        [BILLING, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"billing {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result
