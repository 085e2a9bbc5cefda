"""The embedded warehouse is shared by concurrent processes and stopped by `billing db down`;
the same code works against an external PostgreSQL given by URL."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psutil
import psycopg
import pytest

from tests.helpers import BILLING, REPO, billing
from warehouse import embedded
from warehouse.migrate import available


def _postmasters(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "-D" in cmdline and str(pgdata) in cmdline:
            found.append(proc)
    return found


@pytest.mark.minutes(0.4)
def test_processes_starting_at_once_share_one_server_and_db_down_stops_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"BILLING_HOME": str(home), "BILLING_DATABASE_URL": ""}
    procs = [
        subprocess.Popen(
            [BILLING, "db", "up"],
            env={**os.environ, **env},
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    pgdata = (home / "pgdata").resolve()
    try:
        assert len(_postmasters(pgdata)) == 1
        urls = {billing("db", "url", env=env, check=True).stdout.strip() for _ in range(2)}
        assert len(urls) == 1
        url = urls.pop()
        # no role is trusted: each gives the password kept 0600 in BILLING_HOME
        assert (home / "credentials.json").stat().st_mode & 0o777 == 0o600
        for role in ("postgres", "billing_api"):
            with pytest.raises(psycopg.OperationalError, match="password"):
                psycopg.connect(url.replace(url.split("@")[0], f"postgresql://{role}:wrong"))
        with psycopg.connect(url) as conn:
            versions = [r[0] for r in conn.execute("select version from app.schema_migrations")]
        # each applied once, although three processes raced
        assert versions == [m.version for m in available()]

        down = billing("db", "down", env=env, check=True)
        assert "stopped" in down.stdout
        assert _postmasters(pgdata) == []
        assert embedded.running_uri(pgdata) is None

        again = billing("db", "up", env=env, check=True)  # restarts on the same data
        assert "migrations applied now: none" in again.stdout
    finally:
        embedded.stop(pgdata)


@pytest.mark.minutes(0.3)
def test_external_warehouse_by_url(tmp_path: Path) -> None:
    other = tmp_path / "other" / "pgdata"
    url = embedded.ensure_running(other)
    home = tmp_path / "unused-home"
    env = {"BILLING_HOME": str(home), "BILLING_DATABASE_URL": url}
    try:
        billing("db", "up", env=env, check=True)
        assert billing("db", "url", env=env, check=True).stdout.strip() == url
        billing(
            "catalog", "apply", str(REPO / "examples" / "demo_catalog.yaml"), env=env, check=True
        )
        with psycopg.connect(url) as conn:
            tenants = conn.execute("select count(*) from app.tenants").fetchone()
        assert tenants == (5,)
        assert not (home / "pgdata").exists()  # no embedded server was started
        refused = billing("db", "down", env=env)
        assert refused.returncode == 2
        assert "external" in refused.stderr
    finally:
        embedded.stop(other)
