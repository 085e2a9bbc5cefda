"""`billing ingest FILE`: NDJSON or CSV through the API's validation and writer."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ingest.bodies import loads
from ingest.schemas import EVENT_FIELDS, MAX_EVENTS, Metric, validate_events
from ingest.writer import copy_rows
from warehouse.db import connect
from warehouse.migrate import apply_migrations

REQUIRED_COLUMNS = ("tenant_id", "metric", "amount", "timestamp", "idempotency_key")


class BulkFormatError(ValueError):
    """The file cannot be read as the format it claims."""


@dataclass(frozen=True)
class Rejected:
    line: int
    field: str
    message: str


@dataclass
class BulkReport:
    path: Path
    read: int = 0
    accepted: int = 0
    stored: bool = True
    rejected: list[Rejected] = field(default_factory=list)

    def summary(self) -> str:
        bad_lines = len({r.line for r in self.rejected})
        stored = self.accepted if self.stored else 0
        tail = "" if self.stored else " (nothing stored: --all-or-nothing)"
        return (
            f"{self.path}: {self.read:,} events read, {stored:,} stored, "
            f"{bad_lines:,} rejected{tail}"
        )


class _CountingReader(io.RawIOBase):
    """A binary reader that counts the bytes read, for the progress bar."""

    def __init__(self, raw: io.BufferedReader) -> None:
        self._raw = raw
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)
        self.bytes_read += n
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _ndjson(handle: io.TextIOWrapper) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            yield number, loads(line)
        except ValueError as exc:
            yield number, ValueError(f"not valid JSON: {exc}")


def _csv(handle: io.TextIOWrapper) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(handle)
    columns = set(reader.fieldnames or ())
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    unknown = sorted(columns - EVENT_FIELDS)
    if missing or unknown:
        problems = [f"missing column {c!r}" for c in missing]
        problems += [f"unknown column {c!r}" for c in unknown]
        raise BulkFormatError(
            f"CSV header: {'; '.join(problems)} (expected {', '.join(REQUIRED_COLUMNS)}"
            f"[, metadata])"
        )
    for row in reader:
        number = reader.line_num
        if None in row:
            yield number, ValueError("more fields than the header has")
            continue
        event: dict[str, Any] = {k: v for k, v in row.items() if k != "metadata"}
        metadata = (row.get("metadata") or "").strip()
        if metadata:
            try:
                event["metadata"] = loads(metadata)
            except ValueError as exc:
                yield number, ValueError(f"metadata is not valid JSON: {exc}")
                continue
        yield number, event


def ingest_file(
    path: Path,
    fmt: str = "auto",
    *,
    all_or_nothing: bool = False,
    console: Console | None = None,
) -> BulkReport:
    """Validate and store every event of ``path``; report what was rejected and why."""
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() == ".csv" else "ndjson"
    try:
        size = path.stat().st_size
        counter = _CountingReader(path.open("rb"))
    except OSError as exc:
        raise BulkFormatError(f"{path}: cannot read: {exc}") from None
    # a leading byte order mark (Excel's "CSV UTF-8") is not part of the first header
    handle = io.TextIOWrapper(io.BufferedReader(counter), encoding="utf-8-sig", newline="")
    report = BulkReport(path)
    with (
        handle,
        connect() as conn,
        Progress(
            TextColumn("[bold]ingest[/bold] {task.description}"),
            BarColumn(),
            TextColumn("{task.fields[events]:,} events"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as progress,
    ):
        apply_migrations(conn)
        conn.commit()
        rows = conn.execute("select metric_key, allow_negative from app.metrics").fetchall()
        metrics = {key: Metric(key, allow) for key, allow in rows}
        task = progress.add_task(path.name, total=size, events=0)
        source = _csv(handle) if fmt == "csv" else _ndjson(handle)
        chunk: list[tuple[int, Any]] = []
        try:
            for item in source:
                chunk.append(item)
                if len(chunk) == MAX_EVENTS:
                    _store(conn, chunk, metrics, report, commit=not all_or_nothing)
                    chunk = []
                    progress.update(task, completed=counter.bytes_read, events=report.read)
            _store(conn, chunk, metrics, report, commit=not all_or_nothing)
        except UnicodeDecodeError as exc:
            conn.rollback()
            raise BulkFormatError(f"{path}: not UTF-8 text: {exc}") from None
        if all_or_nothing and report.rejected:
            conn.rollback()
            report.stored = False
        else:
            conn.commit()
    return report


def _store(
    conn: Any,
    chunk: list[tuple[int, Any]],
    metrics: dict[str, Metric],
    report: BulkReport,
    *,
    commit: bool,
) -> None:
    if not chunk:
        return
    lines = [number for number, _ in chunk]
    events: list[Any] = []
    for number, item in chunk:
        if isinstance(item, ValueError):
            report.rejected.append(Rejected(number, "(line)", str(item)))
            events.append(None)  # keeps indexes aligned; reported above, not again
        else:
            events.append(item)
    present = [(i, e) for i, e in enumerate(events) if e is not None]
    rows, errors, _ = validate_events([e for _, e in present], metrics, datetime.now(UTC))
    for error in errors:
        report.rejected.append(Rejected(lines[present[error.index][0]], error.field, error.message))
    copy_rows(conn, rows)
    if commit:
        conn.commit()
    report.read += len(chunk)
    report.accepted += len(rows)
