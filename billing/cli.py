"""The `billing` command line. Exit 0 when all went well, 2 for bad input, 1 otherwise."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.console import Console

if TYPE_CHECKING:  # the commands import what they need when they run
    import psycopg

    from billing.finance import Report
    from orchestration.pipeline import DailyPlan

# Piped output (CI logs, files) gets a wide console so invoice tables are not squeezed.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 160)


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)


@contextmanager
def migrated_connection() -> Iterator[psycopg.Connection[Any]]:
    """A connection to the warehouse, its missing migrations applied first, as `billing db
    up` applies them: every command that reads or writes the warehouse's tables begins so
    (the runs too: orchestration.pipeline.one_run_at_a_time)."""
    from warehouse.db import connect
    from warehouse.migrate import apply_migrations

    with connect() as conn:
        apply_migrations(conn)
        yield conn


@click.group()
def main() -> None:
    """Usage-based billing warehouse: ingest, rate, invoice, sync."""


# -- db ---------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Start, locate or stop the warehouse."""


def warehouse_up() -> list[str]:
    """Start the warehouse if embedded, apply the migrations and build the views the API
    reads (dbt's `live` and `preview` selectors, once); return the migrations applied now."""
    from orchestration.pipeline import build_live, build_preview
    from warehouse.db import connect
    from warehouse.migrate import apply_migrations

    with connect() as conn:
        applied = apply_migrations(conn)  # the versions applied now, for `db up` to say
    build_live()
    build_preview()
    return applied


@db.command("up")
def db_up() -> None:
    """Start the warehouse if embedded, apply migrations and build the live-usage views
    (idempotent)."""
    applied = warehouse_up()
    console.print(f"warehouse up; migrations applied now: {', '.join(applied) or 'none'}")


@db.command("url")
def db_url() -> None:
    """Print the warehouse URL."""
    from warehouse.db import database_url

    click.echo(database_url())


@db.command("down")
def db_down() -> None:
    """Stop the embedded server."""
    from warehouse import embedded
    from warehouse.settings import get_settings

    settings = get_settings()
    if not settings.embedded:
        fail("BILLING_DATABASE_URL points at an external warehouse; it is not ours to stop", 2)
    stopped = embedded.stop(settings.pgdata)
    console.print("warehouse stopped" if stopped else "warehouse was not running")


# -- catalog ----------------------------------------------------------------------------------


@main.group()
def catalog() -> None:
    """Metrics, plans, tenants and subscriptions."""


@catalog.command("apply")
@click.argument("file", type=click.Path(path_type=Path))
def catalog_apply(file: Path) -> None:
    """Validate a catalog YAML and load it; an invalid file writes nothing."""
    from warehouse.catalog import CatalogError, apply_catalog, load_catalog_file

    try:
        parsed = load_catalog_file(file)
        with migrated_connection() as conn:
            result = apply_catalog(conn, parsed, str(file))
    except CatalogError as exc:
        fail(f"invalid catalog\n{exc}", 2)
    console.print(result.summary())


# -- API ------------------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Worker processes  [default: the CPU count]",
)
def serve(host: str, port: int, workers: int | None) -> None:
    """Serve the HTTP API, with a worker process per CPU unless told otherwise."""
    import uvicorn

    warehouse_up()  # once, before the workers race for it
    try:
        uvicorn.run(
            "ingest.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers or min(os.cpu_count() or 1, 64),
            log_level="warning",
            access_log=False,
        )
    except SystemExit as exc:  # uvicorn's 3 when it cannot start (its message printed): ours 1
        sys.exit(1 if exc.code else 0)


@main.group()
def apikey() -> None:
    """Tenant API keys."""


@apikey.command("create")
@click.option("--tenant", required=True, help="The tenant the key acts for.")
def apikey_create(tenant: str) -> None:
    """Print a new tenant API key once; only its hash is stored."""
    from ingest.auth import create_api_key
    from warehouse.catalog import ID_RE, ID_RULE

    if not ID_RE.fullmatch(tenant):
        fail(f"--tenant {tenant!r}: must be {ID_RULE}", 2)
    with migrated_connection() as conn:
        key_id, key = create_api_key(conn, tenant)
    err_console.print(f"created {key_id} for tenant {tenant!r}; the key is shown only now:")
    click.echo(key)


@apikey.command("list")
@click.option("--tenant", help="Only this tenant's keys.")
def apikey_list(tenant: str | None) -> None:
    """Every tenant key: its id, tenant, when it was created and revoked (never the key)."""
    from rich.table import Table

    from ingest.auth import list_api_keys

    with migrated_connection() as conn:
        keys = list_api_keys(conn, tenant)
    table = Table("key_id", "tenant", "created_at", "revoked_at")
    for key in keys:
        table.add_row(
            key.key_id,
            key.tenant_id,
            f"{key.created_at:%Y-%m-%d %H:%M:%S}Z",
            f"{key.revoked_at:%Y-%m-%d %H:%M:%S}Z" if key.revoked_at else "",
        )
    console.print(table)


@apikey.command("revoke")
@click.argument("key_id")
def apikey_revoke(key_id: str) -> None:
    """Revoke a tenant key: refused by every API worker within a second."""
    from ingest.auth import UnknownKey, revoke_api_key

    try:
        with migrated_connection() as conn:
            key = revoke_api_key(conn, key_id)
    except UnknownKey:
        fail(f"no API key {key_id!r} (billing apikey list shows them)", 2)
    console.print(f"{key.key_id} of tenant {key.tenant_id!r} revoked at {key.revoked_at}")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "ndjson", "csv"]),
    default="auto",
    show_default=True,
    help="auto: by the file's extension (.csv, else NDJSON).",
)
@click.option("--all-or-nothing", is_flag=True, help="Store nothing if any event is invalid.")
def ingest(file: Path, fmt: str, all_or_nothing: bool) -> None:
    """Bulk-load events from NDJSON or CSV with the API's validation and idempotency."""
    from ingest.bulk import BulkFormatError, ingest_file

    try:
        report = ingest_file(file, fmt, all_or_nothing=all_or_nothing, console=err_console)
    except BulkFormatError as exc:
        fail(str(exc), 2)
    for rejected in report.rejected[:50]:
        err_console.print(
            f"{file}: line {rejected.line}: {rejected.field}: {rejected.message}",
            highlight=False,
            soft_wrap=True,
        )
    if len(report.rejected) > 50:
        err_console.print(f"... and {len(report.rejected) - 50} more problems")
    console.print(report.summary())
    if report.rejected:
        sys.exit(2)


# -- run --------------------------------------------------------------------------------------


def _parse_day(value: str, name: str) -> date:
    from orchestration.dbt_vars import parse_day

    try:
        return parse_day(value)
    except ValueError as exc:
        fail(f"{name}: {exc}", 2)


@main.group()
def run() -> None:
    """Build usage (daily) or invoices (monthly) with dbt."""


@run.command("daily")
@click.option("--date", "day", help="One UTC day, YYYY-MM-DD.")
@click.option("--from", "first", help="First UTC day, YYYY-MM-DD.")
@click.option("--to", "last", help="Last UTC day, included, YYYY-MM-DD.")
def run_daily_cmd(day: str | None, first: str | None, last: str | None) -> None:
    """Build daily usage for one day or a range of days."""
    from orchestration.pipeline import PipelineError, run_daily

    if day and (first or last):
        fail("give --date, or --from and --to, not both", 2)
    if day:
        first_day = last_day = _parse_day(day, "--date")
    elif first and last:
        first_day, last_day = _parse_day(first, "--from"), _parse_day(last, "--to")
    else:
        fail("give --date D, or --from D --to D", 2)
    if last_day < first_day:
        fail(f"--to {last_day} is before --from {first_day}", 2)
    started = time.perf_counter()
    try:
        plan = run_daily(first_day, last_day)
    except PipelineError as exc:
        fail(str(exc))
    _say_copied(plan)
    console.print(f"daily usage built for {first_day} .. {last_day} {_took(started)}")


@run.command("monthly")
@click.option("--month", required=True, help="Calendar month, YYYY-MM.")
@click.option("--finalize", is_flag=True, help="Freeze the month's invoices afterwards.")
def run_monthly_cmd(month: str, finalize: bool) -> None:
    """Compute a calendar month's invoices (drafts until finalized)."""
    from orchestration.dbt_vars import parse_month
    from orchestration.pipeline import PipelineError, run_monthly

    try:
        first = parse_month(month)
    except ValueError as exc:
        fail(f"--month: {exc}", 2)
    started = time.perf_counter()
    try:
        outcome = run_monthly(first, finalize=finalize)
    except PipelineError as exc:
        fail(str(exc))
    if outcome.catch_up.needed:
        _say_copied(outcome.catch_up)
    elif outcome.catch_up.sources is not None:  # on Spark, its sources stamped
        console.print("nothing new since the last daily run: its days were not built again")
    done = "built and finalized" if finalize else "built"
    console.print(f"invoices {done} for {month} {_took(started)}")


def _say_copied(plan: DailyPlan) -> None:
    """On Spark: whether the run copied the sources from PostgreSQL."""
    if plan.copied is not None:
        console.print(
            "sources copied into Spark"
            if plan.copied
            else "sources as the last copy left them: not copied again"
        )


def _took(started: float) -> str:
    """Where a run's seconds went: dbt's start in this process, its parse, the nodes' own
    execution, dbt's work around them, and the rest (planning, the run log, the freeze)."""
    from orchestration.dbt_run import WARM

    spent = WARM.spent
    took = time.perf_counter() - started
    if not spent.commands:  # dbt ran in the Spark worker (the spark target)
        return f"in {took:.1f} s"
    return (
        f"in {took:.1f} s (importing dbt {spent.importing:.1f} s, parsing "
        f"{spent.parsing:.1f} s, running {spent.nodes} nodes {spent.executing:.1f} s, "
        f"dbt around them {spent.commands - spent.executing:.1f} s, "
        f"the rest {took - spent.total:.1f} s)"
    )


# -- sync -------------------------------------------------------------------------------------


@main.group()
def sync() -> None:
    """Push finalized invoices to payment providers."""


@sync.command("stripe")
@click.option("--month", help="Only this month's invoices, YYYY-MM (default: every month).")
def sync_stripe(month: str | None) -> None:
    """Push finalized invoices not yet in Stripe; each failure is reported, the rest go on."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from orchestration.dbt_vars import parse_month
    from sync.stripe_push import PushInProgress, StripeNotConfigured, push_invoices

    try:
        first = parse_month(month) if month else None
    except ValueError as exc:
        fail(f"--month: {exc}", 2)
    with migrated_connection():  # the tables the push reads, on a warehouse set up by none
        pass
    with Progress(
        TextColumn("pushing to Stripe"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        transient=True,  # the summary follows, or the error alone
    ) as progress:
        task = progress.add_task("push", total=None)
        try:
            report = push_invoices(
                first,
                on_start=lambda total: progress.update(task, total=total),
                on_result=lambda _: progress.advance(task),
            )
        except StripeNotConfigured as exc:
            fail(str(exc), 2)
        except PushInProgress as exc:
            fail(str(exc))
    for failed in report.failed:
        err_console.print(
            f"[red]failed[/red] {failed.invoice_id} (tenant {failed.tenant_id}): {failed.message}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(report.summary())
    if report.failed:
        sys.exit(1)


# -- invoices ---------------------------------------------------------------------------------


@main.group()
def invoices() -> None:
    """Read invoices and their lines."""


@invoices.command("list")
@click.option("--month", help="YYYY-MM")
@click.option("--tenant", help="Tenant id")
def invoices_list(month: str | None, tenant: str | None) -> None:
    """List invoices."""
    from billing.reports import NotBuiltYet, ReportError, invoice_table, list_invoices
    from orchestration.dbt_vars import parse_month

    try:
        first = parse_month(month) if month else None
    except ValueError as exc:
        fail(f"--month: {exc}", 2)
    try:
        rows = list_invoices(month=first, tenant=tenant)
    except (NotBuiltYet, ReportError) as exc:
        fail(str(exc), 2)
    console.print(invoice_table(rows))


@invoices.command("show")
@click.argument("invoice_id")
def invoices_show(invoice_id: str) -> None:
    """Show one invoice with its lines."""
    from billing.reports import InvoiceNotFound, NotBuiltYet, render_invoice

    try:
        console.print(render_invoice(invoice_id))
    except InvoiceNotFound:
        fail(f"no invoice {invoice_id!r}", 2)
    except NotBuiltYet as exc:
        fail(str(exc), 2)


@main.group()
def webhooks() -> None:
    """Outbound webhooks: deliver what the outbox holds."""


@webhooks.command("deliver")
def webhooks_deliver() -> None:
    """One pass: every due delivery, in order per endpoint and tenant (failures are retried
    by a later pass, after a backoff)."""
    from sync.webhooks_out import deliver

    warehouse_up()
    console.print(deliver().summary())


@main.group()
def credits() -> None:
    """Prepaid credits: grants and what is left of them."""


@credits.command("list")
@click.option("--tenant", help="Only this tenant's grants.")
def credits_list(tenant: str | None) -> None:
    """Every credit grant with what finalized invoices used, what expired or was voided,
    and the balance left; then the balance per tenant."""
    from billing.reports import ReportError, credit_table, money, require_tenant
    from ingest.credits import balances, credit_grants
    from warehouse.db import connect

    warehouse_up()
    with connect() as conn:
        try:
            require_tenant(conn, tenant)
        except ReportError as exc:
            fail(str(exc), 2)
        grants = credit_grants(conn, tenant)
    console.print(credit_table(grants))
    for total in balances(grants):
        console.print(
            f"{total['tenant_id']}: {money(total['balance_minor'], total['currency'])} left"
        )


# -- report -----------------------------------------------------------------------------------

_format = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)


def _png_to_write(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """--plot names a PNG in a directory that exists: refused before the report is read."""
    if value is None:
        return None
    if value.suffix.lower() != ".png":
        raise click.BadParameter(f"{value}: the chart is a PNG; name the file .png")
    folder = value.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise click.BadParameter(f"{value}: no directory {str(folder)!r} to write it in")
    return value


_plot = click.option(
    "--plot",
    "plot_file",
    type=click.Path(path_type=Path, dir_okay=False),
    callback=_png_to_write,
    help="Also draw a chart to FILE.png.",
)


@main.group()
def report() -> None:
    """Usage and revenue reports as a table, CSV or JSON, with a chart."""


def _emit(built: Report, fmt: str, plot_file: Path | None) -> None:
    from billing.finance import plot

    rendered = built.render(fmt)
    if isinstance(rendered, str):
        click.echo(rendered, nl=False)
    else:
        console.print(rendered)
    if plot_file is not None:
        try:
            plot(built, plot_file)
        except OSError as exc:
            fail(f"--plot {plot_file}: cannot write: {exc}")
        err_console.print(f"chart written to {plot_file}")


@report.command("usage")
@click.option("--tenant", required=True)
@click.option("--from", "first", required=True, help="First UTC day, YYYY-MM-DD.")
@click.option("--to", "last", required=True, help="Last UTC day, included, YYYY-MM-DD.")
@_format
@_plot
def report_usage(tenant: str, first: str, last: str, fmt: str, plot_file: Path | None) -> None:
    """A tenant's daily usage of every metric, including events sent a moment ago."""
    from billing.finance import ReportError, usage_report

    days = _parse_day(first, "--from"), _parse_day(last, "--to")
    warehouse_up()
    try:
        built = usage_report(tenant, *days)
    except ReportError as exc:
        fail(str(exc), 2)
    _emit(built, fmt, plot_file)


@report.command("revenue")
@click.option("--from", "first", required=True, help="First month, YYYY-MM.")
@click.option("--to", "last", required=True, help="Last month, included, YYYY-MM.")
@_format
@_plot
def report_revenue(first: str, last: str, fmt: str, plot_file: Path | None) -> None:
    """Invoiced, paid and outstanding money by month and currency."""
    from billing.finance import ReportError, revenue_report
    from billing.reports import NotBuiltYet
    from orchestration.dbt_vars import parse_month

    try:
        first_month, last_month = parse_month(first), parse_month(last)
    except ValueError as exc:
        fail(f"--from/--to: {exc}", 2)
    try:
        built = revenue_report(first_month, last_month)
    except (ReportError, NotBuiltYet) as exc:
        fail(str(exc), 2)
    _emit(built, fmt, plot_file)


# -- demo -------------------------------------------------------------------------------------


@main.command()
@click.option("--seed", default=7, show_default=True, help="Random seed of the usage.")
def demo(seed: int) -> None:
    """Load the demo catalog, generate a month of usage, invoice it and print the invoices."""
    from billing.demo import run_demo

    run_demo(console, seed=seed)


if __name__ == "__main__":
    main()
