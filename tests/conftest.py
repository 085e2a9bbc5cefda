"""Shared fixtures: one embedded PostgreSQL for the session, a fresh database per test, a
copy of one that `billing db up` set up once for the session."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from orchestration.dbt_run import PARSE_TARGET_ENV
from orchestration.dbt_worker import IDLE_ENV
from orchestration.pipeline import DBT_PROJECT_DIR
from tests.helpers import with_dbname, worker_starts
from warehouse import embedded
from warehouse.settings import get_settings

# this test process among pytest-xdist's workers ("main" without them), set in
# pytest_configure (xdist names the worker after conftest is imported)
WORKER = "main"


def pytest_configure(config: pytest.Config) -> None:
    """dbt's artifacts (run results, compiled SQL, the docs) and its parse state apart per
    test process: two workers never read each other's half-written files, never re-parse
    because the other parsed for its own server, nor overwrite the manifest Dagster loads."""
    global WORKER
    WORKER = getattr(config, "workerinput", {}).get("workerid", "main")
    target = DBT_PROJECT_DIR / "target" / f"tests-{WORKER}"
    os.environ["DBT_TARGET_PATH"] = str(target)  # not the controller's, which workers inherit
    os.environ[PARSE_TARGET_ENV] = str(target)
    # the dbt workers Dagster's runs start (orchestration/dbt_worker.py) end soon after
    os.environ.setdefault(IDLE_ENV, "120")
    # the tests' Spark runs are small, and the suite is bound by its CPU: the quick JIT
    # compiler alone (about 40% less of the two cores a JVM takes), the serial collector,
    # Spark's expressions interpreted rather than compiled to Java first, two shuffle
    # partitions (bench/README.md: about 22% less again). The same SQL and results; the
    # benchmarks' sizes keep the defaults (warehouse/settings.py)
    os.environ.setdefault(
        "BILLING_SPARK_JVM_OPTIONS",
        "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dspark.sql.codegen.wholeStage=false "
        "-Dspark.sql.codegen.factoryMode=NO_CODEGEN",
    )
    os.environ.setdefault("BILLING_SPARK_SHUFFLE_PARTITIONS", "2")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: a worker more than the cores this process may use. The tests wait on
    processes they start (servers, the CLI, Dagster's runs, a JVM's start) and on injected
    timeouts: with a worker per core the cores stood 9% idle through the suite, with one
    more 2% (bench/README.md)."""
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may run on
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    return cores + 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests that take minutes first, the longest first (`minutes(N)`, about N minutes
    on two cores within the suite; every test of 8 s or more alone has one, about its
    seconds alone / 40), so that the last to start take a few seconds at most and the
    workers end at about the same time.

    pytest-xdist hands each worker two tests at first, in this order, and then one at a
    time as each ends (`--maxschedchunk 1`). So each worker's first two are one of the
    longest and one of the last (a test of seconds): the longest (the bench smoke, the
    Spark parity test, the Dagster schedules) start at once, each on a worker of its own.
    In sorted order the first worker ran the two longest one after the other: 437 s of a
    492 s run with three workers."""

    def minutes(item: pytest.Item) -> float:
        marker = item.get_closest_marker("minutes")
        return float(marker.args[0]) if marker else 0.0

    items.sort(key=minutes, reverse=True)
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    if workers > 1 and len(items) >= 2 * workers:
        longest, rest, last = items[:workers], items[workers:-workers], items[-workers:]
        items[:] = [*(t for pair in zip(longest, last, strict=True) for t in pair), *rest]


@pytest.fixture
def sockets() -> Iterator[Path]:
    """A directory for the dbt workers a test starts (their XDG_RUNTIME_DIR; a socket's path
    must be short: not under tmp_path), each worker stopped after the test (on Spark its
    JVM ends with it)."""
    base = Path(tempfile.mkdtemp(prefix="w", dir="/tmp"))
    yield base
    for line in worker_starts(base):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split()[2]), signal.SIGTERM)
    shutil.rmtree(base)


@pytest.fixture(scope="session")
def pgdata(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home") / "pgdata"


@pytest.fixture(scope="session")
def server_url(pgdata: Path) -> Iterator[str]:
    """One embedded server for the whole session, stopped at the end: the URL of its owner
    role (migrations, dbt, the CLI)."""
    url = embedded.ensure_running(pgdata)
    yield url
    embedded.stop(pgdata)


@pytest.fixture(scope="session")
def api_server_url(server_url: str, pgdata: Path) -> str:
    """The URL of the API's role on the same server: the API in every test connects so, as
    in production."""
    url = embedded.running_uri(pgdata, embedded.API_ROLE)
    assert url is not None
    return url


@pytest.fixture(scope="session")
def set_up_database(server_url: str) -> str:
    """A database as `billing db up` leaves it (the migrations, dbt's live-usage views), made
    once for the session: the template of every test's warehouse.

    It is set up under the name the tests' databases have (database_copy), then renamed:
    dbt keeps a parse state per database name (orchestration/dbt_run.py), so the parse of
    the set-up is the one every test's dbt command finds, instead of a second whole parse of
    the project in each test process."""
    from billing.cli import warehouse_up

    name, template = f"t_{WORKER}", "set_up"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}"')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BILLING_DATABASE_URL", with_dbname(server_url, name))
        get_settings.cache_clear()
        warehouse_up()
    get_settings.cache_clear()
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'alter database "{name}" rename to "{template}"')
    return template


@pytest.fixture
def empty_database(
    server_url: str, api_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A fresh database with nothing in it; BILLING_DATABASE_URL (and the API's
    BILLING_API_DATABASE_URL) point at it for this test."""
    yield from _database(server_url, api_server_url, monkeypatch, template=None)


@pytest.fixture
def warehouse(
    server_url: str, api_server_url: str, set_up_database: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A fresh database as `billing db up` leaves it; BILLING_DATABASE_URL (and the API's
    BILLING_API_DATABASE_URL) point at it."""
    yield from _database(server_url, api_server_url, monkeypatch, template=set_up_database)


def _database(
    server_url: str, api_server_url: str, monkeypatch: pytest.MonkeyPatch, template: str | None
) -> Iterator[str]:
    with database_copy(server_url, template) as url:
        monkeypatch.setenv("BILLING_DATABASE_URL", url)
        name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        monkeypatch.setenv("BILLING_API_DATABASE_URL", with_dbname(api_server_url, str(name)))
        get_settings.cache_clear()
        yield url
        get_settings.cache_clear()


@contextmanager
def database_copy(server_url: str, template: str | None, name: str = "") -> Iterator[str]:
    """The URL of a database made anew (a copy of ``template``, else empty), dropped after.

    One name per test process (``name`` for a second database beside it): dbt's warm runner
    parses the project once per warehouse connection and keeps a parse state per database
    (orchestration/dbt_run.py), so every test of the process reuses the first one's parse,
    as `billing run` would."""
    name = name or f"t_{WORKER}"
    copy = f' template "{template}"' if template else ""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}"{copy}')
    try:
        yield with_dbname(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')
