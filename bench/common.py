"""Helpers shared by the benchmarks: a scratch warehouse and a live API server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from warehouse import embedded
from warehouse.settings import get_settings

REPO = Path(__file__).resolve().parent.parent
BILLING = str(Path(sys.executable).parent / "billing")


@contextmanager
def scratch_warehouse() -> Iterator[tuple[str, dict[str, str]]]:
    """A new embedded server in a temporary BILLING_HOME, stopped and removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix="billing-bench-"))
    env = {"BILLING_HOME": str(home), "BILLING_DATABASE_URL": ""}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    get_settings.cache_clear()
    url = embedded.ensure_running(home / "pgdata")
    try:
        subprocess.run(
            [BILLING, "db", "up"], env={**os.environ, **env}, check=True, capture_output=True
        )
        yield url, env
    finally:
        embedded.stop(home / "pgdata")
        shutil.rmtree(home, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


@contextmanager
def api_server(env: dict[str, str], port: int, workers: int) -> Iterator[str]:
    process = subprocess.Popen(
        [BILLING, "serve", "--port", str(port), "--workers", str(workers)],
        env={**os.environ, **env},
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise TimeoutError("billing serve did not start")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
