"""Reading invoices from the marts and rendering them for people."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from rich.console import Group
from rich.table import Table
from rich.text import Text

from warehouse.currencies import MINOR_UNITS
from warehouse.db import connect, relations_exist


class InvoiceNotFound(LookupError):
    pass


class ReportError(ValueError):
    """Bad input to a report: the message names the option."""


def require_tenant(conn: psycopg.Connection[Any], tenant: str | None) -> None:
    """Raise ReportError unless ``tenant`` (when given) is a tenant of the catalog: a typo
    would list nothing, which reads as "none"."""
    from warehouse.catalog import tenant_exists

    if tenant is not None and not tenant_exists(conn, tenant):
        raise ReportError(f"--tenant: unknown tenant {tenant!r}")


class NotBuiltYet(LookupError):
    """A read of a mart no monthly run has built in this warehouse yet."""


def require_built(conn: psycopg.Connection[Any], relation: str, what: str) -> None:
    """Raise NotBuiltYet, saying what builds it, unless ``relation`` exists."""
    if not relations_exist(conn, relation):
        raise NotBuiltYet(f"no {what} yet: run `billing run monthly --month YYYY-MM` first")


@dataclass(frozen=True)
class InvoiceRow:
    invoice_id: str
    tenant_id: str
    currency: str
    period_start: datetime
    status: str
    subtotal_minor: int
    tax_minor: int
    total_minor: int
    hold_reason: str | None = None
    amount_due_minor: int | None = None


def money(amount_minor: int, currency: str) -> str:
    """Minor units to a display string in major units: 123456 usd -> '1,234.56 USD'."""
    exponent = MINOR_UNITS[currency]
    major = Decimal(amount_minor).scaleb(-exponent)
    return f"{major:,.{exponent}f} {currency.upper()}"


def list_invoices(month: date | None = None, tenant: str | None = None) -> list[InvoiceRow]:
    sql = """select invoice_id, tenant_id, currency, period_start, status, subtotal_minor,
                    tax_minor, total_minor, hold_reason, amount_due_minor
             from marts.fct_invoices
             where (%(month)s::date is null or period_start = %(month)s::date::timestamptz)
               and (%(tenant)s::text is null or tenant_id = %(tenant)s::text)
             order by period_start, tenant_id, currency"""
    with connect() as conn:
        require_tenant(conn, tenant)
        require_built(conn, "marts.fct_invoices", "invoices")
        rows = conn.execute(sql, {"month": month, "tenant": tenant}).fetchall()
    return [InvoiceRow(*row) for row in rows]


def invoice_table(rows: list[InvoiceRow]) -> Table:
    table = Table(title="Invoices")
    held = any(row.hold_reason for row in rows)
    # prepaid credits paid part of some: what each still collects
    credited = any(row.amount_due_minor != row.total_minor for row in rows)
    columns = ["invoice", "tenant", "month", "status", "subtotal", "tax", "total"]
    columns += ["due"] if credited else []
    for column in columns + (["held because"] if held else []):
        table.add_column(
            column, justify="right" if column in {"subtotal", "tax", "total", "due"} else "left"
        )
    for row in rows:
        cells = [
            row.invoice_id,
            row.tenant_id,
            row.period_start.strftime("%Y-%m"),
            row.status,
            money(row.subtotal_minor, row.currency),
            money(row.tax_minor, row.currency),
            money(row.total_minor, row.currency),
        ]
        if credited:
            cells.append(money(row.amount_due_minor or 0, row.currency))
        table.add_row(*cells, *([row.hold_reason or ""] if held else []))
    return table


def render_invoice(invoice_id: str) -> Group:
    with connect() as conn:
        require_built(conn, "marts.fct_invoices", "invoices")
        head = conn.execute(
            """select i.invoice_id, i.tenant_id, t.tenant_name, i.currency, i.period_start,
                      i.status, i.subtotal_minor, i.tax_minor, i.total_minor,
                      i.amount_due_minor
               from marts.fct_invoices i
               left join marts.dim_tenants t on t.tenant_id = i.tenant_id
               where i.invoice_id = %s""",
            (invoice_id,),
        ).fetchone()
        if head is None:
            raise InvoiceNotFound(invoice_id)
        lines = conn.execute(
            """select line_type, description, quantity, billable_quantity, amount_minor
               from marts.fct_invoice_lines where invoice_id = %s
               order by array_position(array['base_fee', 'usage', 'minimum', 'discount',
                                             'adjustment', 'credit'], line_type),
                        service_start, metric nulls first, description""",
            (invoice_id,),
        ).fetchall()
    (inv_id, tenant_id, tenant_name, currency, period_start, status, subtotal, tax, total, due) = (
        head
    )
    table = Table(
        title=f"{inv_id}  {tenant_name or tenant_id} ({tenant_id})  "
        f"{period_start:%Y-%m}  [{status}]",
        title_justify="left",
    )
    table.add_column("line")
    table.add_column("quantity", justify="right")
    table.add_column("billable", justify="right")
    table.add_column("amount", justify="right")
    credits = [line for line in lines if line[0] == "credit"]
    for line_type, description, quantity, billable, amount in lines:
        if line_type == "credit":
            continue
        table.add_row(
            f"{description}" if line_type != "adjustment" else f"adjustment: {description}",
            _qty(quantity),
            _qty(billable),
            money(amount, currency),
        )
    table.add_section()
    table.add_row("subtotal", "", "", money(subtotal, currency))
    table.add_row("tax", "", "", money(tax, currency))
    table.add_row(Text("total", style="bold"), "", "", Text(money(total, currency), style="bold"))
    if credits:
        # prepaid credits pay the total, after tax
        table.add_section()
        for _, description, _, _, amount in credits:
            table.add_row(description, "", "", money(amount, currency))
        table.add_row(
            Text("amount due", style="bold"), "", "", Text(money(due, currency), style="bold")
        )
    return Group(table)


def credit_table(grants: list[dict[str, Any]]) -> Table:
    """The grants of `billing credits list`, with their balances (fct_credit_balances)."""
    table = Table(title="Prepaid credits")
    columns = ["grant", "tenant", "status", "priority", "expires", "granted", "used"]
    for column in [*columns, "expired/voided", "balance"]:
        table.add_column(column, justify="right" if column in _AMOUNTS else "left")
    for grant in grants:
        currency = grant["currency"]
        table.add_row(
            grant["grant_id"],
            grant["tenant_id"],
            grant["status"],
            str(grant["priority"]),
            f"{grant['expires_at']:%Y-%m-%d %H:%M}Z" if grant["expires_at"] else "never",
            money(grant["granted_minor"], currency),
            money(grant["used_minor"], currency),
            money(grant["expired_minor"] + grant["voided_minor"], currency),
            money(grant["balance_minor"], currency),
        )
    return table


_AMOUNTS = {"granted", "used", "expired/voided", "balance"}


def _qty(value: Decimal | None) -> str:
    if value is None:
        return ""
    normalized = value.quantize(Decimal("0.0001")).normalize()
    return f"{normalized:,f}"
