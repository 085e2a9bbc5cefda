"""How the pipeline runs dbt: a run's vars reach the SQL it compiles, though dbt parses the
project without them (orchestration.dbt_run), a failing run says why, and runs take turns."""

from __future__ import annotations

import json
import threading
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from billing.cli import main
from orchestration.dbt_run import WarmDbt
from orchestration.pipeline import (
    DBT_PROJECT_DIR,
    PREVIEW_INVOICES,
    PREVIEW_SCHEMA,
    PipelineError,
    build_preview,
    dbt_env,
    one_run_at_a_time,
    restore_api_views,
    run_daily,
    run_dbt,
)
from tests.helpers import REPO, parse_state_file
from warehouse.migrate import apply_migrations

DEMO_CATALOG = REPO / "examples" / "demo_catalog.yaml"

pytestmark = pytest.mark.slow


def test_a_runs_vars_reach_its_sql_and_a_failure_shows_dbts_error(
    warehouse: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second command compiles no Jinja source again (orchestration/dbt_run.py,
    _compile_templates_once), and its own vars reach its SQL."""
    import jinja2

    with psycopg.connect(warehouse) as conn:
        apply_migrations(conn)
    select = ["--select", "+fct_usage_daily", "--exclude-resource-type", "unit_test"]
    run_dbt(["build", *select, "--vars", json.dumps({"min_date": "2026-10-01"})], quiet=True)

    compiled: list[str] = []
    compile_: Any = jinja2.Environment.compile  # Jinja's own, which a cached source skips

    def counted(self: jinja2.Environment, source: str, *args: object) -> object:
        compiled.append(source)
        return compile_(self, source, *args)

    monkeypatch.setattr(jinja2.Environment, "compile", counted)
    with pytest.raises(PipelineError) as failed:
        run_dbt(["build", *select, "--vars", json.dumps({"min_date": "not-a-day"})], quiet=True)
    message = str(failed.value)
    assert message.startswith("dbt build failed (exit 1)")
    assert "not-a-day" in message  # PostgreSQL's error about the cast of the run's var
    assert compiled == []


def test_dbt_makes_no_debug_event_that_no_logger_writes(
    warehouse: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dbt's loggers write info (dbt_project.yml): its debug events, one per statement and
    cache step, are dropped before dbt makes each a message (orchestration/dbt_run.py,
    _skip_unlogged_debug_events); `--log-level-file debug` has them all in its log."""
    from dbt_common.events import event_manager

    with psycopg.connect(warehouse) as conn:
        apply_migrations(conn)
    made: list[str] = []
    make = event_manager.msg_from_base_event

    def counted(event: object, level: object = None) -> object:
        message = make(event, level=level)  # type: ignore[arg-type]
        made.append(message.info.level)
        return message

    monkeypatch.setattr(event_manager, "msg_from_base_event", counted)
    logs = {}
    for level in ("info", "debug"):
        made.clear()
        path = tmp_path / level
        run_dbt(
            [
                "run",
                "--select",
                "stg_app__currencies",
                "--log-path",
                str(path),
                "--log-level-file",
                level,
            ],
            quiet=True,
        )
        logs[level] = ((path / "dbt.log").read_text(), made.count("debug"))
    assert logs["info"][1] == 0 and "obj_description" not in logs["info"][0]
    assert logs["debug"][1] > 10 and "obj_description" in logs["debug"][0]  # the view's check


def test_agate_date_types_share_one_set_of_parsedatetime_constants(
    warehouse: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each statement's answer is an agate table whose Date and DateTime types each made
    parsedatetime's constants (0.2 ms, about 330 times in a demo day's run): a command makes
    one set per locale at most (orchestration/dbt_run.py, _share_date_constants), and the
    types still parse text with them."""
    import parsedatetime
    from agate.data_types import Date, DateTime

    with psycopg.connect(warehouse) as conn:
        apply_migrations(conn)
    made: list[object] = []
    make = parsedatetime.Constants.__init__

    def counted(self: object, *args: Any, **kwargs: Any) -> None:
        made.append(kwargs.get("localeID"))
        make(self, *args, **kwargs)

    monkeypatch.setattr(parsedatetime.Constants, "__init__", counted)
    run_dbt(["run", "--select", "stg_app__currencies"], quiet=True)
    assert len(made) <= 1, made
    assert Date().cast("Oct 1, 2026") == date(2026, 10, 1)
    assert DateTime().cast("October 1, 2026 2:03 pm") == datetime(2026, 10, 1, 14, 3)


def test_a_context_holds_the_macros_dbt_would_put_in_it(
    warehouse: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each context of a command, flattened at once (orchestration/dbt_run.py,
    _flatten_macros_at_once), holds the same names as dbt's own flattening, each macro's
    name the same generator: the node's package over the root project over the adapters'."""
    from dbt.context.macros import MacroNamespace
    from dbt.context.manifest import ManifestContext

    from orchestration import dbt_run

    with psycopg.connect(warehouse) as conn:
        apply_migrations(conn)
    contexts: list[Any] = []
    make = ManifestContext.__init__

    def kept(self: Any, *args: Any, **kwargs: Any) -> None:
        make(self, *args, **kwargs)
        contexts.append(self)

    monkeypatch.setattr(ManifestContext, "__init__", kept)
    run_dbt(["run", "--select", "stg_app__currencies"], quiet=True)
    flattened = [c for c in contexts if type(c.namespace) is MacroNamespace]
    assert len(flattened) >= 3  # the node's compile and run, an adapter's macro at least
    for context in flattened:
        made = []
        for to_dict in (dbt_run._context_dict, dbt_run._dbt_context_dict):
            context._ctx = {}  # what to_dict fills
            made.append(to_dict(context))
        ours, dbts = made
        assert ours.keys() == dbts.keys()
        names = set(context.namespace)
        assert len(names) > 500 and {"dbt", "billing", "is_incremental"} <= names
        assert all(ours[name] is dbts[name] for name in names)
        assert ours["dbt"]["get_where_subquery"].macro.package_name == "dbt"


def test_the_first_parse_is_kept_out_of_full_collections(
    warehouse: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dbt's modules and the first manifest live as long as the process: they are frozen
    out of the garbage collector's full passes (orchestration/dbt_run.py,
    _freeze_the_first_parse), after a collection, once per process: a later parse (here
    the same warehouse's again, its manifest forgotten) stays collectable."""
    import gc

    from orchestration import dbt_run

    run_dbt(["ls", "--select", "stg_app__currencies", "--quiet"], quiet=True)
    assert dbt_run._frozen
    assert gc.get_freeze_count() > 100_000  # dbt's modules and a manifest, not a handful
    # (not the count compared after: a frozen object freed meanwhile leaves it, one fewer)
    freezes: list[None] = []
    real_freeze = gc.freeze
    monkeypatch.setattr(gc, "freeze", lambda: freezes.append(real_freeze()))
    monkeypatch.setattr(dbt_run.WARM, "_manifests", {})
    parsing = dbt_run.WARM.spent.parsing
    run_dbt(["ls", "--select", "stg_app__currencies", "--quiet"], quiet=True)
    assert dbt_run.WARM.spent.parsing > parsing  # it parsed again
    assert freezes == []


def test_a_warehouse_on_another_server_is_not_parsed_again(warehouse: str, tmp_path: Path) -> None:
    """A new embedded warehouse (a socket directory of its own) or another server parses as
    the last one did: no model reads where the server listens, and dbt's full parse costs
    seconds (orchestration/dbt_run.py, PARSE_UNSET). dbt writes its parse state only when it
    parses something."""
    written = parse_written(
        [
            dbt_env() | {"BILLING_DBT_HOST": host, "BILLING_DBT_PORT": port}
            for host, port in ((dbt_env()["BILLING_DBT_HOST"], "5432"), (str(tmp_path), "6543"))
        ]
    )
    assert written[1] == written[0]


def test_databases_and_targets_in_turn_each_keep_their_parse(warehouse: str) -> None:
    """Processes parsing for this warehouse, another database, the `spark` target, then this
    warehouse again: the last finds its own parse state as the first left it, instead of
    parsing the whole project after the others (orchestration/dbt_run.py, PARSE_PROFILE)."""
    first = dbt_env()
    written = parse_written(
        [
            first,
            first | {"BILLING_DBT_DBNAME": "another"},  # `dbt ls` connects to neither
            first | {"BILLING_DBT_TARGET": "spark"},
            first,
        ]
    )
    assert written[3] == written[0]


def parse_written(envs: list[dict[str, str]]) -> list[int]:
    """When the first environment's parse state was last written, after `dbt ls` in each
    environment in turn, each by a new runner (a process of its own: it parses, partially
    when its profile's state allows)."""
    located = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    state = parse_state_file(envs[0])
    written = []
    for env in envs:
        outcome = WarmDbt().invoke(["ls", "--select", "fct_usage_daily", "--quiet", *located], env)
        assert outcome.success, outcome.detail
        written.append(state.stat().st_mtime_ns)
    return written


def test_a_process_builds_the_preview_again_each_time_a_run_dropped_it(warehouse: str) -> None:
    """A process that outlives one run (a Dagster run's process, `billing run monthly`) puts
    the upcoming invoice's view back each time a run dropped it (dbt drops a view with
    what it reads when it replaces it). The view reads ephemeral models, which the warm dbt
    compiles into it as CTEs: the second build of one process once found them marked
    injected by the first and failed ("relation __dbt__cte__fct_invoices does not exist")."""
    result = CliRunner().invoke(main, ["catalog", "apply", str(DEMO_CATALOG)])
    assert result.exit_code == 0, result.output
    for _ in range(3):
        with psycopg.connect(warehouse, autocommit=True) as conn:
            conn.execute(f"drop view if exists {PREVIEW_INVOICES}")
        restore_api_views()
        with psycopg.connect(warehouse, autocommit=True) as conn:
            conn.execute("select set_config('billing.preview_month', '2026-10-01', false)")
            conn.execute("select set_config('billing.preview_tenant', 'acme', false)")
            rows = conn.execute(f"select tenant_id from {PREVIEW_INVOICES}").fetchall()
        assert rows and {tenant for (tenant,) in rows} == {"acme"}


def test_a_preview_an_earlier_version_built_is_built_again_by_db_up_and_by_a_run(
    warehouse: str,
) -> None:
    """A run replaces only the views its own models changed, and the upcoming invoice's view
    is none of them: a warehouse kept the preview an earlier version of the project built
    when only the preview's SQL changed (macros/preview.sql on 2026-12-04). Its schema names
    the project it was built from; `billing db up` and a run's end build it again from
    another."""
    result = CliRunner().invoke(main, ["catalog", "apply", str(DEMO_CATALOG)])
    assert result.exit_code == 0, result.output

    def built_by_an_earlier_version() -> int:
        """As an earlier version leaves it: another SQL (its md5), another project."""
        with psycopg.connect(warehouse, autocommit=True) as conn:
            conn.execute(f"comment on view {PREVIEW_INVOICES} is 'dbt sql md5 0'")
            conn.execute(f"comment on schema {PREVIEW_SCHEMA} is 'billing project sha256 0'")
            return _view_oid(conn)

    def rebuilt_since(oid: int) -> bool:
        with psycopg.connect(warehouse, autocommit=True) as conn:
            [(project,)] = conn.execute(
                "select obj_description(oid, 'pg_namespace') from pg_namespace where nspname = %s",
                (PREVIEW_SCHEMA,),
            ).fetchall()
            return _view_oid(conn) != oid and project.startswith("billing project sha256 ")

    earlier = built_by_an_earlier_version()
    result = CliRunner().invoke(main, ["db", "up"])
    assert result.exit_code == 0, result.output
    assert rebuilt_since(earlier)
    assert not build_preview()  # this version's: nothing to build

    earlier = built_by_an_earlier_version()
    run_daily(date(2026, 10, 1), date(2026, 10, 1), quiet=True)
    assert rebuilt_since(earlier)


def _view_oid(conn: psycopg.Connection[Any]) -> int:
    found = conn.execute("select %s::regclass::oid", (PREVIEW_INVOICES,)).fetchone()
    assert found is not None
    return int(found[0])


def test_one_run_at_a_time_a_second_run_waits_for_the_first(warehouse: str) -> None:
    """A run started while another holds the warehouse (the CLI beside a Dagster schedule)
    waits for it to end, then runs: the two dbt builds never overlap."""
    result = CliRunner().invoke(main, ["catalog", "apply", str(DEMO_CATALOG)])
    assert result.exit_code == 0, result.output
    done: list[object] = []
    with one_run_at_a_time():  # as a run in progress holds it
        second = threading.Thread(
            target=lambda: done.append(run_daily(date(2026, 10, 1), date(2026, 10, 1), quiet=True))
        )
        second.start()
        deadline = time.monotonic() + 60
        with psycopg.connect(warehouse, autocommit=True) as conn:
            while time.monotonic() < deadline:
                waiting = conn.execute(
                    "select count(*) from pg_locks where locktype = 'advisory' and not granted"
                ).fetchone()
                if waiting and waiting[0]:
                    break
                time.sleep(0.1)
            assert waiting == (1,), "the second run did not wait for the lock"
            assert not done
            built = conn.execute("select count(*) from app.pipeline_runs").fetchone()
            assert built == (0,)
    second.join(timeout=300)
    assert done, "the second run did not go on once the first ended"
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("select count(*) from app.pipeline_runs").fetchone() == (1,)
