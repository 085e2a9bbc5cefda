"""Helpers for tests: run the CLI, address a database on the test server."""

from __future__ import annotations

import os
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from bench.common import ServerExited, wait_until_healthy
from orchestration.dbt_run import environment, parse_state_dir
from orchestration.pipeline import DBT_PROJECT_DIR

REPO = Path(__file__).resolve().parent.parent
BILLING = str(Path(sys.executable).parent / "billing")


def serve_in_thread(server: socketserver.BaseServer) -> None:
    """Answer ``server``'s requests in a daemon thread until its ``shutdown()``, which its
    loop notices within 10 ms: at socketserver's default (0.5 s) every stop waited about
    that long (the Stripe push's failure test stops 72 servers: 35 s of its 77)."""
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    ).start()


def parse_state_file(env: Mapping[str, str]) -> Path:
    """dbt's parse state for the profile ``env`` gives (orchestration/dbt_run.py: a
    directory per profile), which dbt rewrites only when it parses something."""
    with environment(env):
        return DBT_PROJECT_DIR / parse_state_dir() / "partial_parse.msgpack"


def with_dbname(url: str, dbname: str) -> str:
    """The same server, another database."""
    params = conninfo_to_dict(url)
    user = params.get("user", "postgres")
    password = f":{params['password']}" if params.get("password") else ""
    return f"postgresql://{user}{password}@/{dbname}?host={params['host']}"


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


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiServer:
    """`billing serve` in a subprocess on a free loopback port."""

    def __init__(self, env: dict[str, str], workers: int | None = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> ApiServer:
        workers = [] if self.workers is None else ["--workers", str(self.workers)]
        self.process = subprocess.Popen(
            [BILLING, "serve", "--port", str(self.port), *workers],
            env={**os.environ, **self.env},
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            wait_until_healthy("billing serve", self.url, self.process, timeout)
        except ServerExited as exc:
            raise ServerExited(f"{exc}: {self.process.stderr.read()!r}") from None  # type: ignore[union-attr]
        return self

    def kill(self) -> None:
        import signal

        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        import signal

        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def worker_starts(sockets: Path) -> list[str]:
    """The log lines of every dbt worker started with ``sockets`` as its XDG_RUNTIME_DIR
    (orchestration/dbt_worker.py), one per start: "dbt worker PID serving PATH"."""
    return [
        line
        for log in sorted(sockets.glob("billing-dbt-*/*.log"))
        for line in log.read_text().splitlines()
        if line.startswith("dbt worker ") and "serving" in line
    ]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def wait_ended(pids: Sequence[int], timeout: float) -> None:
    """Wait until none of ``pids`` runs (pid_alive); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while alive := [pid for pid in pids if pid_alive(pid)]:
        assert time.monotonic() < deadline, f"still running after {timeout:g} s: {alive}"
        time.sleep(0.1)


def explained(conn: psycopg.Connection[Any], query: str, analyze: bool = False) -> dict[str, Any]:
    """The root node of ``query``'s plan (`explain (format json)`), run too when
    ``analyze``: its nodes' actual rows, loops and blocks."""
    options = "analyze, format json" if analyze else "format json"
    row = conn.execute(f"explain ({options}) {query}").fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0][0]["Plan"]  # type: ignore[no-any-return]


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """An explained plan's nodes, the first node first."""
    yield node
    for child in node.get("Plans", ()):
        yield from plan_nodes(child)


def plan_scans(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The nodes of an explained plan that read a relation."""
    return (each for each in plan_nodes(node) if "Relation Name" in each)
