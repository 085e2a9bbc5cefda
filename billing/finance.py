"""`billing report usage|revenue`: the same rows as a table, CSV or JSON, and a chart.

A report is a list of columns and rows read from the warehouse; every format renders that
one list, and the chart plots it and carries it in the PNG's metadata (``billing-report``),
so that what the picture shows can be checked against the data.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.table import Table

from billing.reports import ReportError, money, require_built, require_tenant
from ingest.usage import MAX_DAYS, daily_usage
from warehouse.currencies import MINOR_UNITS
from warehouse.db import connect

FORMATS = ("table", "csv", "json")


@dataclass(frozen=True)
class Report:
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    # how the chart reads the rows: x column, y column, the columns naming a series
    chart: tuple[str, str, tuple[str, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def as_json(self) -> str:
        return json.dumps(self.records(), default=_plain, indent=2)

    def as_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows([[_plain(v) for v in row] for row in self.rows])
        return out.getvalue()

    def as_table(self) -> Table:
        table = Table(title=self.title)
        for column in self.columns:
            table.add_column(column, justify="left" if column in _TEXT_COLUMNS else "right")
        currency_at = self.columns.index("currency") if "currency" in self.columns else None
        for row in self.rows:
            cells = []
            for column, value in zip(self.columns, row, strict=True):
                if column.endswith("_minor") and currency_at is not None:
                    cells.append(money(value, row[currency_at]))
                else:
                    cells.append(str(_plain(value)))
            table.add_row(*cells)
        return table

    def render(self, fmt: str) -> str | Table:
        if fmt == "json":
            return self.as_json()
        if fmt == "csv":
            return self.as_csv()
        return self.as_table()


_TEXT_COLUMNS = {"date", "month", "metric", "dimensions", "currency", "tenant_id"}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _dimensions_text(values: dict[str, str | None]) -> str:
    """A combination of dimension values as the invoice lines print it."""
    return ", ".join(
        f"{name} {'(none)' if value is None else value}" for name, value in values.items()
    )


def usage_report(tenant: str, first: date, last: date) -> Report:
    """Daily quantities of every metric the tenant used, live (as GET /v1/usage)."""
    if last < first:
        raise ReportError(f"--to {last} is before --from {first}")
    if (last - first).days >= MAX_DAYS:
        raise ReportError(f"at most {MAX_DAYS} days a report")
    with connect() as conn:
        require_tenant(conn, tenant)
        metrics = conn.execute(
            "select metric_key, dimensions from app.metrics order by 1"
        ).fetchall()
        rows = [
            (day.day, metric, _dimensions_text(day.dimensions), day.quantity, day.event_count)
            for metric, dimensions in metrics
            for day in daily_usage(
                conn, tenant, metric, first, last, json.loads(dimensions or "[]")
            )
        ]
    rows.sort(key=lambda row: (row[0], row[1], row[2]))
    return Report(
        f"Usage of {tenant}, {first} .. {last}",
        ("date", "metric", "dimensions", "quantity", "event_count"),
        rows,
        chart=("date", "quantity", ("metric", "dimensions")),
    )


def revenue_report(first_month: date, last_month: date) -> Report:
    """``marts.fct_revenue_monthly`` for the months first_month..last_month."""
    if last_month < first_month:
        raise ReportError(f"--to {last_month:%Y-%m} is before --from {first_month:%Y-%m}")
    with connect() as conn:
        require_built(conn, "marts.fct_revenue_monthly", "revenue")
        rows = conn.execute(
            """select month::date, currency, invoiced_minor, paid_minor, outstanding_minor,
                      invoice_count, tenant_count
               from marts.fct_revenue_monthly
               where month >= %s::date::timestamptz and month <= %s::date::timestamptz
               order by month, currency""",
            (first_month, last_month),
        ).fetchall()
    return Report(
        f"Revenue {first_month:%Y-%m} .. {last_month:%Y-%m}",
        (
            "month",
            "currency",
            "invoiced_minor",
            "paid_minor",
            "outstanding_minor",
            "invoice_count",
            "tenant_count",
        ),
        [tuple(row) for row in rows],
        chart=("month", "invoiced_minor", ("currency",)),
    )


def plot(report: Report, path: Path) -> dict[str, list[tuple[str, float]]]:
    """Draw the report's chart to a PNG: one line per series (a metric and its dimension
    values, or a currency in major units). Returns the plotted series; they are also in the
    PNG's metadata."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_name, y_name, series_names = report.chart
    series: dict[str, list[tuple[str, float]]] = {}
    for record in report.records():
        y = Decimal(record[y_name])
        if y_name.endswith("_minor"):
            y = y.scaleb(-MINOR_UNITS[record["currency"]])
        name = ", ".join(str(record[n]) for n in series_names if record[n] not in ("", None))
        series.setdefault(name, []).append((str(_plain(record[x_name])), float(y)))
    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=100)
    for name, points in sorted(series.items()):
        axes.plot([x for x, _ in points], [y for _, y in points], marker="o", label=name)
    axes.set_title(report.title)
    axes.set_xlabel(x_name)
    label = y_name.removesuffix("_minor") + (" (major units)" if y_name.endswith("_minor") else "")
    axes.set_ylabel(label)
    if series:
        axes.legend()
    axes.tick_params(axis="x", rotation=45)
    figure.tight_layout()
    figure.savefig(
        path, format="png", metadata={"billing-report": json.dumps(series, sort_keys=True)}
    )
    plt.close(figure)
    return series
