"""The one run sequence, daily and monthly: plan (the days, and the late days), arrivals, dbt
build, run log, finalize, push. `billing run` and the Dagster assets both call it; which
models a run builds comes from the dbt project's selectors (dbt_project/selectors.yml).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from orchestration.dbt_run import (
    PARSE_TARGET_ENV,
    WARM,
    environment,
    parse_target,
    target_dir,
)
from orchestration.dbt_vars import (
    Window,
    daily_vars,
    days_window,
    late_days_vars,
    month_starts,
    month_window,
    monthly_vars,
    whole_months,
)
from warehouse.db import connect, database_url, relations_exist
from warehouse.migrate import apply_migrations
from warehouse.outbox import record_event
from warehouse.settings import DBT_PROJECT_DIR, Settings, get_settings

if TYPE_CHECKING:  # imported where used: a `billing run` imports neither FastAPI nor Stripe
    from sync.stripe_push import PushReport, PushResult

MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"


def artifacts_dir() -> Path:
    """Where dbt writes a command's artifacts (run_results.json, the docs): the project's
    target, unless DBT_TARGET_PATH says otherwise (the tests give each process its own)."""
    return target_dir(["--project-dir", str(DBT_PROJECT_DIR)])


# The named selectors of dbt_project/selectors.yml. Every model is in `daily` or `monthly`
# (its meta.run); Dagster partitions the models by the same two.
DAILY = "daily"
MONTHLY = "monthly"
FINALIZED_REFRESH = "finalized_refresh"
# what the API's live reads need (GET /v1/usage, quotas): all of it on a warehouse without
# stored arrivals, its views alone on one with them
LIVE = "live"
LIVE_VIEWS = "live_views"
# the upcoming invoice's view (GET /v1/invoices/upcoming): the monthly models inlined in a
# view of the schema `preview` (dbt_project/macros/preview.sql)
PREVIEW = "preview"
PREVIEW_SCHEMA = "preview"
PREVIEW_INVOICES = f"{PREVIEW_SCHEMA}.fct_upcoming_invoices"
# what the preview reads of the stored events (a daily run appends to the one, merges the
# other)
USAGE_PARTIALS = "intermediate.int_usage_partials"
USAGE_MONTH_VALUES = "intermediate.int_usage_month_values"
# one run at a time, whoever starts it (the CLI, a Dagster schedule, a backfill, the live
# views' build of `billing db up`): two dbt builds of the same models at once would collide
RUN_LOCK = 7_204_222

log = logging.getLogger(__name__)

# Unit tests check the SQL, not the data: `make test` runs them (on PostgreSQL), not every
# pipeline run, from the CLI or Dagster.
SKIP_UNIT_TESTS = ("--exclude-resource-type", "unit_test")

T = TypeVar("T")

# The events received that no arrivals batch holds yet (a view of the `live` selector)
UNSTORED = "intermediate.int_events_unstored"

# The UTC days a daily run has built (in its window or as a late day), a row each. One
# select, whole: a set operation around it (`except`) takes it as one operand
BUILT_DAYS = """select day
                from (select cast(d as date) as day
                      from app.pipeline_runs as r,
                           generate_series(r.window_start, r.window_end - 1,
                                           interval '1 day') as d
                      where r.kind = 'daily'
                      union
                      select unnest(r.extra_days)
                      from app.pipeline_runs as r
                      where r.kind = 'daily') as built"""


class PipelineError(RuntimeError):
    """dbt failed; the message says which command."""


@dataclass(frozen=True)
class DbtInvocation:
    command: str
    selector: str
    vars: dict[str, Any]

    def args(self) -> list[str]:
        skip_unit_tests = list(SKIP_UNIT_TESTS) if self.command == "build" else []
        return [
            self.command,
            "--selector",
            self.selector,
            # a test runs with its models, never before a model it reads is built
            "--indirect-selection",
            "buildable",
            *skip_unit_tests,
            "--vars",
            json.dumps(self.vars, sort_keys=True),
        ]


# How a run builds its own selection: the CLI runs dbt and yields nothing; a Dagster asset
# streams dbt's events as its materializations. Everything else a run does is the same.
Build = Callable[[DbtInvocation], Iterable[Any]]


@dataclass(frozen=True)
class DailyPlan:
    """What a daily run builds: its window (None: no new day, as in a monthly run whose days
    are all built), and the days late events arrived for: days already built, and days
    before every daily run's window."""

    window: Window | None
    extra_days: tuple[date, ...]
    started_at: datetime
    # whether events have arrived that the deduplication has not seen
    pending: bool = True
    # on Spark with copies: the sources' stamp when the run planned (warehouse.spark), and
    # whether the run copied them (False: they were as the last copy left them); None
    # where nothing is copied
    sources: str | None = None
    copied: bool | None = None

    @property
    def needed(self) -> bool:
        """Whether the run has anything to build."""
        return self.window is not None or self.pending

    def invocation(self) -> DbtInvocation:
        if self.window is None:
            return DbtInvocation("build", DAILY, late_days_vars(self.extra_days))
        return DbtInvocation(
            "build", DAILY, daily_vars(self.window.start, self.window.end, self.extra_days)
        )


def plan_daily(window: Window | None, settings: Settings | None = None) -> DailyPlan:
    """The days to build: the window, and every other day that has events the deduplication
    has not seen yet (late events) and that a daily run built or no window will cover (before
    every daily run's window), so they are never left out. Builds the live views first
    where they are missing (build_live): the plan reads one of them.

    On the `spark` target the arrivals live in Spark, so late days are not looked for:
    rebuild them with a window that covers them (README.md, Spark). Events are pending
    there unless the sources hold what the last daily build on Spark read."""
    settings = settings or get_settings()
    if settings.dbt_target == "postgres":
        _build_live(settings, quiet=True)
    with connect(settings) as conn:
        started_at = conn.execute("select now()").fetchone()[0]  # type: ignore[index]
        if settings.dbt_target != "postgres":
            sources = _sources_stamp(conn, settings)
            return DailyPlan(
                window, (), started_at, pending=not _spark_built(sources, settings), sources=sources
            )
        # whether events arrived that the arrivals do not hold yet (dbt's unstored_arrivals),
        # and the days among theirs that a daily run has built (none before the first run)
        # or that no run would build: those before the first day of every daily run's
        # window, this one's included (a clock at 1970, history loaded before the first
        # run), which would be in no mart otherwise. Not those before the calendar's first
        # day (a time in 1 BC, stored before ingest refused them): no run can name their
        # day, and Python cannot read it. One scan of the unstored events, grouped by the
        # day of those it keeps and by a null for all the others: a few groups. A first
        # run keeps a history from before its window alone, and looks no day up while no
        # run has built one (10M events of its window: 6.5 s to group them by their day
        # and look each day up, 4.3 s now)
        row = conn.execute(
            f"""with first_window_day as (
                   select cast(least(min(window_start), %(start)s) as timestamp)
                          at time zone 'UTC' as starts
                   from app.pipeline_runs
                   where kind = 'daily' and window_start < window_end
               ),
               built_days as materialized ({BUILT_DAYS}),
               unseen as materialized (
                   select case
                              when event_ts < (select starts from first_window_day)
                                   and event_ts >= timestamptz '0001-01-01T00:00:00Z'
                                or exists (select 1 from built_days)
                                   and cast(event_ts as date) in (select day from built_days)
                              then cast(event_ts as date)
                          end as day
                   from {UNSTORED}
                   group by 1
               )
               select exists (select 1 from unseen),
                      array(select day from unseen where day is not null order by 1)""",
            {"start": window.start if window else None},
        ).fetchone()
    assert row is not None
    pending, built = bool(row[0]), row[1]
    # the window's own days are built anyway
    late = tuple(day for day in built if not (window and window.start <= day < window.end))
    return DailyPlan(window, late, started_at, pending=pending)


def unbuilt_days(window: Window, settings: Settings | None = None) -> Window | None:
    """The span of the window's days that no daily run has built, or None."""
    with connect(settings) as conn:
        row = conn.execute(
            f"""select min(day), max(day)
               from (select cast(d as date) as day
                     from generate_series(%(start)s::date, %(end)s::date - 1,
                                          interval '1 day') as d
                     except {BUILT_DAYS}) as unbuilt""",
            {"start": window.start, "end": window.end},
        ).fetchone()
    if row is None or row[0] is None:
        return None
    return Window(row[0], row[1] + timedelta(days=1))


def record_run(
    kind: str,
    window: Window | None,
    started_at: datetime,
    extra_days: tuple[date, ...] = (),
    settings: Settings | None = None,
) -> None:
    # a daily run with no window (late days only) is logged with an empty one
    start, end = (window.start, window.end) if window else (started_at.date(),) * 2
    with connect(settings) as conn:
        conn.execute(
            """insert into app.pipeline_runs (kind, window_start, window_end, extra_days,
                                              received_through, started_at)
               values (%s, %s, %s, %s, %s, %s)""",
            (kind, start, end, list(extra_days), started_at, started_at),
        )


def drain(steps: Generator[Any, None, T]) -> T:
    """Run a sequence to its end, dropping what it yields; return what it returns."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def dbt_build(*, quiet: bool = False) -> Build:
    """The CLI's way to build a selection: run_dbt, warm in this process."""

    def build(invocation: DbtInvocation) -> Iterable[Any]:
        run_dbt(invocation.args(), quiet=quiet)
        return ()

    return build


@contextmanager
def one_run_at_a_time(settings: Settings | None = None) -> Iterator[None]:
    """Hold the warehouse's run lock (a session advisory lock on a connection of its own,
    in no transaction) while a run lasts; a second run waits for the first to end. A run
    begins by applying the migrations the warehouse lacks, as `billing db up` and the CLI's
    other commands do: no dbt build reads a warehouse without its tables (a new one, or the
    first run after an upgrade, the CLI's or a schedule's)."""
    with connect(settings, autocommit=True) as conn:
        got = conn.execute("select pg_try_advisory_lock(%s)", (RUN_LOCK,)).fetchone()
        if not (got and got[0]):
            log.warning("another run is in progress in this warehouse: waiting for it to end")
            conn.execute("select pg_advisory_lock(%s)", (RUN_LOCK,))
        try:
            apply_migrations(conn)
            yield
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (RUN_LOCK,))


def daily_steps(
    window: Window | None, build: Build, *, when_needed: bool = False
) -> Generator[Any, None, DailyPlan]:
    """A daily run: plan the days (the window, and the late days), bring the arrivals up to
    date and build the day's usage (one dbt build of the `daily` selector), log the run.
    With ``when_needed``, nothing is run when there is no day to build and no new event.
    One run at a time (one_run_at_a_time)."""
    with one_run_at_a_time():
        return (yield from _daily(window, build, when_needed=when_needed))


def _daily(
    window: Window | None, build: Build, *, when_needed: bool = False
) -> Generator[Any, None, DailyPlan]:
    plan = plan_daily(window)
    if when_needed and not plan.needed:
        return plan
    plan = replace(plan, copied=prepare_target(stamp=plan.sources))
    yield from build(plan.invocation())
    target_built()
    record_run("daily", plan.window, plan.started_at, plan.extra_days)
    restore_api_views()
    look_for_alert_crossings()
    return plan


@dataclass(frozen=True)
class MonthlyOutcome:
    catch_up: DailyPlan  # the daily run it began with
    finalized: int


def monthly_steps(
    window: Window, build: Build, *, finalize: bool = False, quiet: bool = False
) -> Generator[Any, None, MonthlyOutcome]:
    """A monthly run over the whole months of ``window``: first a daily run of the months'
    days that no daily run has built (with the arrivals and late days, so the invoices read
    every event stored now, and a month run before any day is complete); then the invoices
    (one dbt build of the `monthly` selector), the run log, and with ``finalize`` the freeze
    of the drafts and a refresh of what reads them. One run at a time (one_run_at_a_time)."""
    if finalize:
        require_postgres_to_finalize()
    with one_run_at_a_time():
        return (yield from _monthly(window, build, finalize=finalize, quiet=quiet))


def _monthly(
    window: Window, build: Build, *, finalize: bool, quiet: bool
) -> Generator[Any, None, MonthlyOutcome]:
    months = whole_months(window.start, window.end)
    month_vars = monthly_vars(months.start, months.end)
    # the days are not this run's to stream: they are the daily selection's models
    catch_up = yield from _daily(unbuilt_days(months), dbt_build(quiet=quiet), when_needed=True)
    started_at = datetime.now(UTC)
    # taken before the build reads anything: all it misses lies past it (DECISIONLOG.md)
    through = watermark()
    yield from build(DbtInvocation("build", MONTHLY, month_vars))
    record_run("monthly", months, started_at)
    frozen = 0
    if finalize:
        for month in month_starts(months.start, months.end):
            frozen += finalize_month(month, through)
        # the marts now read the frozen copies, with status `finalized`
        run_dbt(DbtInvocation("run", FINALIZED_REFRESH, month_vars).args(), quiet=quiet)
    restore_api_views()
    look_for_alert_crossings()
    return MonthlyOutcome(catch_up, frozen)


def push_steps(
    window: Window,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[PushResult], None] | None = None,
) -> PushReport:
    """Push the finalized invoices of the months of ``window`` to Stripe, each once."""
    from sync.stripe_push import PushReport, push_invoices

    report = PushReport()
    for month in month_starts(window.start, window.end):
        report.results += push_invoices(month, on_start=on_start, on_result=on_result).results
    return report


def dbt_executable() -> str:
    """`billing-dbt` (orchestration.dbt_run) of this environment, next to the running
    Python, else the one on PATH."""
    candidate = Path(sys.executable).parent / "billing-dbt"
    return str(candidate) if candidate.exists() else "billing-dbt"


def profile_env(settings: Settings | None = None) -> dict[str, str]:
    """The variables ``dbt_project/profiles.yml`` reads: the warehouse's connection, the
    target, and for the `spark` target its session settings."""
    settings = settings or get_settings()
    params = conninfo_to_dict(database_url(settings))
    found = {
        "BILLING_DBT_HOST": str(params.get("host") or "localhost"),
        "BILLING_DBT_PORT": str(params.get("port") or 5432),
        "BILLING_DBT_USER": str(params.get("user") or "postgres"),
        "BILLING_DBT_PASSWORD": str(params.get("password") or ""),
        "BILLING_DBT_DBNAME": str(params.get("dbname") or "postgres"),
        "BILLING_DBT_TARGET": settings.dbt_target,
    }
    if settings.dbt_target == "spark":
        from warehouse.spark import session_env

        found |= session_env(settings)
    return found


def dbt_env(settings: Settings | None = None) -> dict[str, str]:
    """What a dbt command needs in its environment: the profile's variables, where the
    project is, and no usage statistics sent unless the user's environment asks."""
    return {
        **profile_env(settings),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": os.environ.get("DBT_SEND_ANONYMOUS_USAGE_STATS", "false"),
        "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
        "DBT_PROJECT_DIR": str(DBT_PROJECT_DIR),
    }


def dbt_process_env(settings: Settings | None = None) -> dict[str, str]:
    """The environment of a dbt process: this one's, with dbt_env."""
    return {**os.environ, **dbt_env(settings)}


def run_dbt(args: Sequence[str], settings: Settings | None = None, *, quiet: bool = False) -> None:
    """Run one dbt command against the configured warehouse; raise PipelineError on failure.

    On PostgreSQL in this process, warm (orchestration.dbt_run: dbt imported and the project
    parsed once per process); on Spark through `billing-dbt`, in the Spark worker that holds
    the target's one JVM (the local metastore admits one, and the copy and the queries run
    there too: warehouse/spark.py).
    """
    settings = settings or get_settings()
    located = [*args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    if settings.dbt_target == "postgres":
        outcome = WARM.invoke([*located, "--quiet"] if quiet else located, dbt_env(settings))
        exit_code, detail = outcome.exit_code, outcome.detail
    else:
        result = subprocess.run(
            [dbt_executable(), *located],
            env=dbt_process_env(settings),
            cwd=DBT_PROJECT_DIR,
            capture_output=quiet,
            text=True,
            check=False,
        )
        exit_code = result.returncode
        detail = ((result.stdout or "") + (result.stderr or ""))[-4000:] if quiet else ""
    if exit_code != 0:
        raise PipelineError(f"dbt {' '.join(args[:1])} failed (exit {exit_code})\n{detail}")


def _copies_sources(settings: Settings) -> bool:
    """Whether runs copy the sources into the target (Spark, unless
    BILLING_SPARK_COPY_SOURCES=false says they are Spark tables already)."""
    return settings.dbt_target == "spark" and settings.spark_copy_sources


def prepare_target(settings: Settings | None = None, *, stamp: str | None = None) -> bool | None:
    """Before a daily run on Spark: copy the sources there from PostgreSQL, where they land,
    unless they hold what the last copy copied (warehouse.spark; ``stamp``: theirs when the
    run planned); whether it copied, None where runs copy nothing."""
    settings = settings or get_settings()
    if not _copies_sources(settings):
        return None
    from warehouse.spark import SparkLoadError, copy_sources

    try:
        return copy_sources(settings, stamp)
    except SparkLoadError as exc:
        raise PipelineError(str(exc)) from exc


def target_built(settings: Settings | None = None) -> None:
    """After a daily build on Spark: record that it read the sources' last copy."""
    settings = settings or get_settings()
    if _copies_sources(settings):
        from warehouse.spark import record_built

        record_built(settings)


def _sources_stamp(conn: psycopg.Connection[Any], settings: Settings) -> str | None:
    """The sources' stamp in the connection's snapshot where runs copy them, else None."""
    if not _copies_sources(settings):
        return None
    from warehouse.spark import sources_stamp

    return sources_stamp(conn)


def _spark_built(sources: str | None, settings: Settings) -> bool:
    """Whether the last daily build on Spark read what the sources hold now (``sources``,
    their stamp; None: nothing is known of them)."""
    from warehouse.spark import sources_unchanged_since

    return sources is not None and sources_unchanged_since("built", settings, sources)


def build_live(settings: Settings | None = None, *, quiet: bool = True) -> bool:
    """Build the live views (selector `live`: the API's live usage, the daily plan's
    unstored events) if the warehouse lacks one; return whether it built. On PostgreSQL
    whatever the dbt target: the API reads PostgreSQL."""
    settings = settings or get_settings()
    if not _live_found(settings)[0]:  # the usual case, without waiting for a run in progress
        with one_run_at_a_time(settings):
            return _build_live(settings, quiet=quiet)
    return False


def _build_live(settings: Settings, *, quiet: bool) -> bool:
    """build_live, for a caller holding the run lock."""
    built, stored = _live_found(settings)
    if built:
        return False
    on_postgres = settings.model_copy(update={"dbt_target": "postgres"})
    run_dbt(["run", "--selector", LIVE_VIEWS if stored else LIVE], on_postgres, quiet=quiet)
    return True


def build_preview(settings: Settings | None = None, *, quiet: bool = True) -> bool:
    """Build the upcoming invoice's view (selector `preview`) if the warehouse lacks it or
    has it from another version of the project, after the live views they read; return
    whether it built."""
    settings = settings or get_settings()
    if _preview_found(settings):
        return False
    build_live(settings, quiet=quiet)
    with one_run_at_a_time(settings):
        return _build_preview(settings, quiet=quiet)


def _build_preview(settings: Settings, *, quiet: bool) -> bool:
    """build_preview, for a caller holding the run lock. The project is parsed with
    BILLING_DBT_PREVIEW=true, which decides the views' schema and materialization, in a
    target path of its own (its parse state and artifacts apart from the runs')."""
    if _preview_found(settings):
        return False
    on_postgres = settings.model_copy(update={"dbt_target": "postgres"})
    target = f"{parse_target()}/preview"
    with environment({"BILLING_DBT_PREVIEW": "true", PARSE_TARGET_ENV: target}):
        run_dbt(["run", "--selector", PREVIEW, "--target-path", target], on_postgres, quiet=quiet)
    with connect(settings, autocommit=True) as conn:
        conn.execute(
            sql.SQL("comment on schema {} is {}").format(
                sql.Identifier(PREVIEW_SCHEMA), sql.Literal(_project_digest())
            )
        )
    return True


def _project_digest() -> str:
    """What the preview's SQL is made of: the dbt project's models, macros and settings,
    each file's path and content. A run replaces only the views its own models changed,
    and the preview is none of them: the preview's schema carries this, and a warehouse
    whose preview another version of the project built (a change to the preview's SQL
    alone, macros/preview.sql) builds it again at `billing db up` or the end of a run."""
    digest = hashlib.sha256()
    files = [DBT_PROJECT_DIR / name for name in ("dbt_project.yml", "selectors.yml")]
    for folder in ("models", "macros"):
        files += (path for path in (DBT_PROJECT_DIR / folder).rglob("*") if path.is_file())
    for path in sorted(files):
        digest.update(str(path.relative_to(DBT_PROJECT_DIR)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"billing project sha256 {digest.hexdigest()}"


def restore_api_views(settings: Settings | None = None) -> None:
    """After a run, for its caller holding the run lock: build again the API's views that
    are not in the run's selection (the live balances, the preview) when the run took them
    with it. dbt replaces a view whose SQL changed (a new version of the project, another
    database's name) by dropping the old one with what reads it."""
    settings = settings or get_settings()
    _build_live(settings, quiet=True)
    _build_preview(settings, quiet=True)


def look_for_alert_crossings(settings: Settings | None = None) -> int:
    """After a run: record the usage alerts its data crossed (ingest.alerts), for every
    tenant with an active alert; return how many. Nothing to import or read without one."""
    with connect(settings, autocommit=True) as conn:
        row = conn.execute(
            "select exists (select 1 from app.usage_alerts where disabled_at is null)"
        ).fetchone()
        if not (row and row[0]):
            return 0
        from ingest.alerts import evaluate_all

        return len(evaluate_all(conn, "run"))


def _preview_found(settings: Settings) -> bool:
    """Whether the preview's view is there, built by this version of the project."""
    with connect(settings, autocommit=True) as conn:
        if not relations_exist(conn, PREVIEW_INVOICES):
            return False
        found = conn.execute(
            "select obj_description(oid, 'pg_namespace') from pg_namespace where nspname = %s",
            (PREVIEW_SCHEMA,),
        ).fetchone()
    return found is not None and found[0] == _project_digest()


def _live_found(settings: Settings) -> tuple[bool, bool]:
    """Whether the live views exist, and the stored arrivals."""
    from ingest.credits import CREDIT_BALANCES
    from ingest.usage import LIVE_USAGE

    with connect(settings, autocommit=True) as conn:
        return (
            relations_exist(
                conn, LIVE_USAGE, UNSTORED, CREDIT_BALANCES, USAGE_PARTIALS, USAGE_MONTH_VALUES
            ),
            relations_exist(conn, "intermediate.int_events_arrivals"),
        )


def require_postgres_to_finalize(settings: Settings | None = None) -> None:
    if (settings or get_settings()).dbt_target != "postgres":
        raise PipelineError(
            "finalize on the postgres target: the frozen invoices are the PostgreSQL "
            "warehouse's, and a Spark build reads them from there"
        )


def run_daily(first_day: date, last_day: date, *, quiet: bool = False) -> DailyPlan:
    """`billing run daily`: usage for first_day..last_day and the days late events hit."""
    return drain(daily_steps(days_window(first_day, last_day), dbt_build(quiet=quiet)))


def run_monthly(month: date, *, finalize: bool = False, quiet: bool = False) -> MonthlyOutcome:
    """`billing run monthly`: the month's invoices; with ``finalize``, frozen afterwards."""
    return drain(
        monthly_steps(month_window(month), dbt_build(quiet=quiet), finalize=finalize, quiet=quiet)
    )


@dataclass(frozen=True)
class Watermark:
    """What a monthly run can price: the arrival batches dbt had stored and the subscription
    changes recorded when it began. A finalized invoice records it; what lies past it is
    billed later as an adjustment."""

    arrivals_through: int
    subscription_events_through: int


def watermark(settings: Settings | None = None) -> Watermark:
    with connect(settings) as conn:
        # subscription changes are numbered in commit order (warehouse.subscriptions)
        row = conn.execute(
            """select (select coalesce(max(event_seq), 0) from raw.subscription_events),
                      case when to_regclass('intermediate.int_events_arrivals') is not null
                           then (select coalesce(max(arrival_batch), 0)
                                 from intermediate.int_events_arrivals)
                           else 0 end"""
        ).fetchone()
    assert row is not None
    return Watermark(arrivals_through=int(row[1]), subscription_events_through=int(row[0]))


def finalize_month(month: date, through: Watermark, settings: Settings | None = None) -> int:
    """Freeze the month's draft invoices and their lines, with the watermark of the run that
    priced them; return how many were frozen.

    A frozen invoice never changes: what its run did not price is billed as adjustments.
    """
    with connect(settings) as conn, conn.transaction():
        conn.execute("lock table app.finalized_invoices in share row exclusive mode")
        frozen = conn.execute(
            """insert into app.finalized_invoices
                   (invoice_id, tenant_id, currency, period_start, period_end, subtotal_minor,
                    tax_minor, total_minor, credits_minor, arrivals_through,
                    subscription_events_through)
               select invoice_id, tenant_id, currency, period_start, period_end,
                      subtotal_minor, tax_minor, total_minor, credits_minor,
                      %(arrivals)s, %(subscriptions)s
               from marts.fct_invoices
               where period_start = %(month)s::date::timestamptz and status = 'draft'
               returning invoice_id, tenant_id, currency, period_start, period_end,
                         subtotal_minor, tax_minor, total_minor, credits_minor""",
            {
                "month": month,
                "arrivals": through.arrivals_through,
                "subscriptions": through.subscription_events_through,
            },
        ).fetchall()
        # the frozen copy has the draft lines' columns, by name (dbt's invoice_line_columns)
        columns = [
            row[0]
            for row in conn.execute(
                """select column_name from information_schema.columns
                   where table_schema = 'app' and table_name = 'finalized_invoice_lines'
                   order by ordinal_position"""
            ).fetchall()
        ]
        listed = sql.SQL(", ").join(map(sql.Identifier, columns))
        conn.execute(
            sql.SQL(
                """insert into app.finalized_invoice_lines ({columns})
                   select {columns} from intermediate.int_invoice_lines_draft
                   where invoice_id = any(%(ids)s)"""
            ).format(columns=listed),
            {"ids": [row[0] for row in frozen]},
        )
        _check_credits_used(conn, [row[0] for row in frozen])
        # the invoices the close leaves out: their month is not re-rated for their tenants
        # until a later close freezes them (int_invoice_rerate_months)
        conn.execute(
            """insert into app.held_invoices (tenant_id, period_start, hold_reason)
               select tenant_id, period_start, hold_reason
               from marts.fct_invoices
               where period_start = %(month)s::date::timestamptz and status = 'held'
               on conflict do nothing""",
            {"month": month},
        )
        # the outbox: each customer's systems hear of the invoice once it is final
        for invoice_id, tenant, currency, start, end, subtotal, tax, total, credits in frozen:
            record_event(
                conn,
                "invoice.finalized",
                tenant,
                {
                    "invoice_id": invoice_id,
                    "tenant_id": tenant,
                    "currency": currency,
                    "period_start": start.isoformat(),
                    "period_end": end.isoformat(),
                    "subtotal_minor": subtotal,
                    "tax_minor": tax,
                    "total_minor": total,
                    "credits_minor": credits,
                    "amount_due_minor": total - credits,
                },
                key=invoice_id,
            )
    # the statistics of the frozen invoices and of the closed months (the trigger of
    # migration 0023 wrote them), which the upcoming invoice is planned on (migration 0021):
    # autovacuum would wait for 50 changes
    with connect(settings, autocommit=True) as conn:
        conn.execute("analyze app.finalized_invoices, app.closed_months")
    return len(frozen)


def _check_credits_used(conn: psycopg.Connection, frozen: list[str]) -> None:
    """Refuse a freeze whose credits the run computed from a balance that is gone: a grant
    voided since, or used by another month frozen since (runs of two months at once)."""
    gone = conn.execute(
        """select g.grant_id, 'used past its amount'
           from app.credit_grants g
           join app.currencies c on c.currency = g.currency
           join app.finalized_invoice_lines l on l.grant_id = g.grant_id
           group by g.grant_id, g.amount, c.minor_unit
           having -sum(l.amount_minor) > g.amount * power(10::numeric, c.minor_unit)
           union all
           select distinct l.grant_id, 'voided'
           from app.finalized_invoice_lines l
           join app.credit_grant_voids v on v.grant_id = l.grant_id
           where l.invoice_id = any(%s)
           limit 1""",
        (frozen,),
    ).fetchone()
    if gone is not None:
        raise PipelineError(
            f"credit grant {gone[0]!r} would be {gone[1]}: a close of another month or a "
            "void changed it after this run priced the month; nothing was finalized, run the "
            "month again"
        )
