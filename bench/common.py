"""Helpers shared by the benchmarks: a scratch warehouse and a live API server."""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from orchestration.dbt_run import environment
from warehouse import embedded
from warehouse.settings import get_settings

REPO = Path(__file__).resolve().parent.parent
BILLING = str(Path(sys.executable).parent / "billing")


@functools.cache  # once per process
def _template() -> Path:
    """A BILLING_HOME whose embedded warehouse `billing db up` set up, stopped: each scratch
    warehouse is a copy of it (a new server and `billing db up` took 12-15 s, a copy 0.3)."""
    home = Path(tempfile.mkdtemp(prefix="billing-bench-template-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    env = {"BILLING_HOME": str(home), "BILLING_DATABASE_URL": ""}
    with environment(env):
        get_settings.cache_clear()
        embedded.ensure_running(home / "pgdata")
        try:
            billing(env, "db", "up")
        finally:
            embedded.stop(home / "pgdata")
    get_settings.cache_clear()
    return home


@contextmanager
def scratch_warehouse() -> Iterator[tuple[str, dict[str, str]]]:
    """A new embedded server in a temporary BILLING_HOME (a copy of ``_template``'s), stopped
    and removed afterwards."""
    template = _template()
    home = Path(tempfile.mkdtemp(prefix="billing-bench-"))
    # cp -a: as root the server's files belong to its own user, and must stay so
    subprocess.run(["cp", "-a", f"{template}/.", str(home)], check=True)
    env = {"BILLING_HOME": str(home), "BILLING_DATABASE_URL": ""}
    with environment(env):
        get_settings.cache_clear()
        url = embedded.ensure_running(home / "pgdata")
        try:
            yield url, env
        finally:
            embedded.stop(home / "pgdata")
            shutil.rmtree(home, ignore_errors=True)
    get_settings.cache_clear()


def billing(env: dict[str, str], *args: str) -> str:
    """Run `billing ...` as a user would, with ``env`` over this process's; return its output."""
    return subprocess.run(
        [BILLING, *args], env={**os.environ, **env}, check=True, capture_output=True, text=True
    ).stdout


@contextmanager
def api_server(env: dict[str, str], port: int, workers: int) -> Iterator[str]:
    """`billing serve` on ``port``, as a user starts it, until the block ends."""
    command = [BILLING, "serve", "--port", str(port), "--workers", str(workers)]
    with _serving("billing serve", command, {**os.environ, **env}, port) as url:
        yield url


@contextmanager
def noop_server(port: int, workers: int) -> Iterator[str]:
    """A no-op ASGI app (bench.noop_asgi) under the uvicorn and workers `billing serve` uses."""
    command = [
        sys.executable, "-m", "uvicorn", "bench.noop_asgi:app", "--port", str(port),
        "--workers", str(workers), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    with _serving("the no-op app", command, dict(os.environ), port) as url:
        yield url


class ServerExited(RuntimeError):
    """The server's process ended before it answered."""


def wait_until_healthy(
    name: str, url: str, process: subprocess.Popen[bytes], timeout: float = 60
) -> None:
    """Return once ``url``'s GET /healthz answers 200, asking every tenth of a second; raise
    ServerExited if ``process`` ends first, TimeoutError after ``timeout`` seconds.

    One HTTP client for every try: a new one (what ``httpx.get`` makes) loads the machine's
    CA certificates each time, about 40 ms of CPU, while the server starting wants the same
    cores: a `billing serve` start cost its waiter 0.3 s of CPU that way, 0.05 s so."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerExited(f"{name} exited with code {process.returncode}")
            try:
                if client.get(f"{url}/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"{name} did not answer GET /healthz within {timeout:g} s")


@contextmanager
def _serving(name: str, command: Sequence[str], env: dict[str, str], port: int) -> Iterator[str]:
    """Run an HTTP server until the block ends, once its GET /healthz answers 200."""
    process = subprocess.Popen(
        command,
        env=env,
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(name, url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


PROC_STAT = Path("/proc/stat")


@dataclass
class Steal:
    """What the hypervisor took of this machine's cores while a block ran (Linux's steal
    time): CPU the benchmark wanted and a virtual machine did not get, which no baseline run
    at another moment shows. None where /proc/stat is not."""

    mean_cores: float | None = None  # over the block
    worst_cores: float | None = None  # over its worst interval (a tenth of a second)


def stolen_text(*cores: float | None) -> str:
    """Stolen cores as the reports show them: two decimals each, '-' where not measured."""
    return " / ".join("-" if c is None else f"{c:.2f}" for c in cores)


def _cpu_jiffies() -> tuple[int, int]:
    """(all the cores' time, the time stolen from them) so far, in clock ticks."""
    fields = [int(f) for f in PROC_STAT.read_text().split("\n", 1)[0].split()[1:9]]
    return sum(fields), fields[7]  # user nice system idle iowait irq softirq steal


@contextmanager
def hypervisor_steal(interval: float = 0.1) -> Iterator[Steal]:
    """Measure the steal time while the block runs (a thread reads /proc/stat every
    ``interval`` seconds); the result is filled in when the block ends. /proc/stat counts
    in ticks of 1/100 s, so over 0.1 s on two cores the worst moves by 0.1 core."""
    steal = Steal()
    if not PROC_STAT.exists():
        yield steal
        return
    samples = [_cpu_jiffies()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(interval):
            samples.append(_cpu_jiffies())

    thread = threading.Thread(target=sample, name="steal", daemon=True)
    thread.start()
    try:
        yield steal
    finally:
        done.set()
        thread.join()
        samples.append(_cpu_jiffies())
        cores = os.cpu_count() or 1

        def stolen(a: tuple[int, int], b: tuple[int, int]) -> float:
            return cores * (b[1] - a[1]) / (b[0] - a[0]) if b[0] > a[0] else 0.0

        steal.mean_cores = round(stolen(samples[0], samples[-1]), 2)
        # whole tenths only: the last piece, cut short by the block's end, may hold a tick
        full = samples[:-1]
        worst = max(map(stolen, full, full[1:]), default=steal.mean_cores)
        steal.worst_cores = round(worst, 2)


# what `billing run daily|monthly` prints last (billing.cli._took)
TOOK = re.compile(
    # rich wraps a long line where it likes: any space may be a line break
    r"in (?P<took>[\d.]+) s \(importing dbt (?P<importing>[\d.]+) s, parsing (?P<parsing>[\d.]+)"
    r" s, running (?P<nodes>\d+) nodes (?P<executing>[\d.]+) s, dbt around them "
    r"(?P<around>-?[\d.]+) s, the rest (?P<rest>-?[\d.]+) s\)".replace(" ", r"\s+")
)


@dataclass
class Breakdown:
    """Where the seconds of `billing run` commands went, summed over the commands."""

    commands: int = 0
    wall: float = 0.0
    starting: float = 0.0  # the process, Python and the CLI's imports, before the command
    importing: float = 0.0
    parsing: float = 0.0
    nodes: int = 0
    executing: float = 0.0
    around: float = 0.0
    rest: float = 0.0
    # each dbt node's execution time (its name: a model's, a test's), summed over the
    # commands, from their run_results.json
    node_seconds: dict[str, float] = field(default_factory=dict)

    def parts(self) -> list[tuple[str, float]]:
        """Each part of the wall time, by name."""
        return [
            ("starting the process and the CLI", self.starting),
            ("importing dbt", self.importing),
            ("parsing the dbt project", self.parsing),
            (f"running {self.nodes} dbt nodes", self.executing),
            ("dbt around the nodes", self.around),
            ("planning, run log, freeze", self.rest),
        ]

    def add(self, output: str, wall: float) -> None:
        found = TOOK.search(output)
        if found is None:
            raise ValueError(f"no timings in the output of billing run: {output[-300:]!r}")
        self.commands += 1
        self.wall += wall
        self.starting += wall - float(found["took"])
        self.importing += float(found["importing"])
        self.parsing += float(found["parsing"])
        self.nodes += int(found["nodes"])
        self.executing += float(found["executing"])
        self.around += float(found["around"])
        self.rest += float(found["rest"])

    def slowest(self, count: int) -> list[tuple[str, float]]:
        """The ``count`` nodes that took longest, the longest first."""
        return sorted(self.node_seconds.items(), key=lambda item: -item[1])[:count]

    def add_nodes(self, run_results: Path) -> None:
        """Add the execution time of each node in a dbt command's run_results.json."""
        for result in json.loads(run_results.read_text())["results"]:
            # model.billing.<name>, test.billing.<name>.<hash>
            name = result["unique_id"].split(".")[2]
            self.node_seconds[name] = self.node_seconds.get(name, 0.0) + result["execution_time"]


def timed_billing(env: dict[str, str], args: Sequence[str], breakdown: Breakdown) -> None:
    """Run `billing run ...` as a user would and add where its seconds went: the command's
    dbt artifacts go to a directory of their own (DBT_TARGET_PATH, as the tests' processes
    have; the parse keeps its state apart), whose run_results.json holds each node's time."""
    with tempfile.TemporaryDirectory(prefix="billing-bench-target-") as target:
        started = time.perf_counter()
        out = billing({**env, "DBT_TARGET_PATH": target}, *args)
        breakdown.add(out, time.perf_counter() - started)
        run_results = Path(target) / "run_results.json"
        if run_results.exists():
            breakdown.add_nodes(run_results)
