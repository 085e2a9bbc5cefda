"""Validation of usage events, exactly as CONTRACT.md states it, and the API's body shapes.

Events are validated by a plain function rather than a pydantic model per event: it is the
hot path of ingest, and it must report every problem of every event (index, field, message).
The pydantic models below document the same shapes in the OpenAPI schema.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    Field,
    WithJsonSchema,
)

from ingest.writer import MAX_OFFSET, Row, copy_text, instant_text
from warehouse.catalog import ID_PATTERN, ID_RE, ID_RULE, KEY_PATTERN
from warehouse.db import in_utc

MAX_EVENTS = 10_000
MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_METADATA_BYTES = 4 * 1024
MAX_KEY_CHARS = 128
MAX_FUTURE = timedelta(minutes=5)
MAX_AMOUNT_DECIMALS = 12
MAX_AMOUNT_ABS = Decimal("1e18")
EVENT_FIELDS = frozenset(
    ("tenant_id", "metric", "amount", "timestamp", "idempotency_key", "metadata")
)


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    allow_negative: bool
    aggregation: str = "sum"


@dataclass(frozen=True, slots=True)
class EventError:
    index: int
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


# An amount's decimal text in its plain form, within both limits above: at most 18 digits
# before the point and 12 after (the published schema's pattern, amount_schema)
AMOUNT_DIGITS = rf"[0-9]{{1,{MAX_AMOUNT_ABS.adjusted()}}}(\.[0-9]{{1,{MAX_AMOUNT_DECIMALS}}})?"
# The amounts clients send (the Python client's decimal text, a JSON integer) pass by that
# form alone, within every rule of checked_amount, which the rest go through (its checks
# were two fifths of an event's validation)
_PLAIN_AMOUNT = re.compile(rf"-?{AMOUNT_DIGITS}")
_PLAIN_INT_ABS = int(MAX_AMOUNT_ABS)


def parse_amount(value: Any) -> Decimal:
    """A finite decimal from a JSON number (already a Decimal) or a string."""
    if (type(value) is str and _PLAIN_AMOUNT.fullmatch(value)) or (
        type(value) is int and -_PLAIN_INT_ABS < value < _PLAIN_INT_ABS
    ):
        return Decimal(value) or Decimal(0)  # -0.00 is 0, as checked_amount says
    return checked_amount(value)


def checked_amount(value: Any) -> Decimal:
    """``parse_amount`` for any value, by the rules on its digits."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise ValueError("must be a number or a decimal string")
    try:
        amount = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not amount.is_finite():
        raise ValueError(f"{value} is not finite")
    # Exact checks on the digits, never arithmetic: the context's exponent limits and its 28
    # digits would raise (1e1000000) or round an amount.
    sign, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)
    if not any(digits):
        return Decimal(0)
    if amount.adjusted() >= MAX_AMOUNT_ABS.adjusted():
        raise ValueError(f"{value} is out of range (|amount| < 10^18)")
    if -exponent > MAX_AMOUNT_DECIMALS:
        # trailing zeros are no decimal places: 0.50000000000000 is 0.5
        zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
        if -(exponent + zeros) > MAX_AMOUNT_DECIMALS:
            raise ValueError(f"{value} has more than {MAX_AMOUNT_DECIMALS} decimal places")
        amount = Decimal((sign, digits[: len(digits) - zeros], exponent + zeros))
    return amount


# An instant in the form clients send (RFC 3339, T and Z in capitals, at most microseconds,
# an offset in the whole hours under writer.MAX_OFFSET): PostgreSQL reads this text as the
# instant Python does; other forms are stored as instant_text writes them
_OFFSET_HOURS = "|".join(f"{hour:02d}" for hour in range(MAX_OFFSET // timedelta(hours=1)))
_PLAIN_INSTANT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    rf"(Z|[+-]({_OFFSET_HOURS}):[0-5][0-9])"
)


def parse_timestamp(value: Any, now: datetime) -> tuple[datetime, str]:
    """The instant of an RFC 3339 date-time, and its text as stored: the client's own in the
    plain form (``_PLAIN_INSTANT``), else ``instant_text``'s."""
    plain = type(value) is str and _PLAIN_INSTANT.fullmatch(value) is not None
    if plain:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:  # a day or an hour out of range
            raise ValueError(f"{value!r} is not an RFC 3339 date-time") from None
    else:
        if not isinstance(value, str):
            raise ValueError("must be an RFC 3339 string such as 2026-10-01T12:00:00Z")
        stripped = value.strip()
        if len(stripped) < 19 or stripped[10] not in "Tt ":
            raise ValueError(f"{value!r} is not an RFC 3339 date-time (2026-10-01T12:00:00Z)")
        try:
            parsed = datetime.fromisoformat(
                stripped[:-1] + "+00:00" if stripped[-1] in "Zz" else stripped
            )
        except ValueError:
            raise ValueError(f"{value!r} is not an RFC 3339 date-time") from None
        if parsed.tzinfo is None:
            raise ValueError(f"{value!r} has no UTC offset; add Z or +hh:mm")
    in_utc(parsed, value)
    if parsed - now > MAX_FUTURE:
        raise ValueError(f"{value!r} is more than 5 minutes in the future")
    return parsed, value if plain else instant_text(parsed)


def printable(text: str) -> str:
    """Input echoed in a response: what UTF-8 cannot carry (a lone surrogate) as an escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# A NUL character in the metadata's JSON text, which PostgreSQL's jsonb refuses: the escape
# \u0000 after an even number of backslashes (the encoder writes a NUL so, and a backslash as
# two: the text \\u0000 is a backslash and "u0000", which is stored)
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


# An event's metadata as stored: compact, as written (one encoder: json.dumps with options
# makes a new one each call)
_metadata_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def storable(text: str) -> bool:
    """PostgreSQL text holds no NUL and only encodable code points (no lone surrogates)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_event(
    index: int, event: Any, metrics: dict[str, Metric], now: datetime, errors: list[EventError]
) -> Row | None:
    """The event as a row to store, or None after appending its problems to ``errors``."""
    if not isinstance(event, dict):
        errors.append(EventError(index, "(event)", "must be a JSON object"))
        return None
    get = event.get  # each field read once: the hot path of ingest
    tenant_id, metric_key, raw_amount = get("tenant_id"), get("metric"), get("amount")
    raw_timestamp, key, metadata = get("timestamp"), get("idempotency_key"), get("metadata")
    before = len(errors)
    if not event.keys() <= EVENT_FIELDS:
        for name in event.keys() - EVENT_FIELDS:
            errors.append(EventError(index, printable(str(name)), "unknown field"))
    if None in (tenant_id, metric_key, raw_amount, raw_timestamp, key):
        for name, value in (
            ("tenant_id", tenant_id),
            ("metric", metric_key),
            ("amount", raw_amount),
            ("timestamp", raw_timestamp),
            ("idempotency_key", key),
        ):
            if value is None:
                errors.append(EventError(index, name, "is required"))

    if tenant_id is not None and (not isinstance(tenant_id, str) or not ID_RE.fullmatch(tenant_id)):
        errors.append(EventError(index, "tenant_id", f"must be {ID_RULE}"))
    metric = metrics.get(metric_key) if isinstance(metric_key, str) else None
    if metric_key is not None and metric is None:
        known = ", ".join(sorted(metrics)) or "none"
        errors.append(
            EventError(index, "metric", f"unknown metric {metric_key!r} (known: {known})"[:300])
        )
    amount: Decimal | None = None
    if raw_amount is not None:
        try:
            amount = parse_amount(raw_amount)
        except ValueError as exc:
            errors.append(EventError(index, "amount", str(exc)))
        else:
            if amount < 0 and metric is not None and not metric.allow_negative:
                errors.append(
                    EventError(
                        index, "amount", f"metric {metric.key!r} does not allow negative amounts"
                    )
                )
    timestamp: str | None = None
    if raw_timestamp is not None:
        try:
            _, timestamp = parse_timestamp(raw_timestamp, now)
        except ValueError as exc:
            errors.append(EventError(index, "timestamp", str(exc)))
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS):
        errors.append(
            EventError(
                index, "idempotency_key", f"must be a string of 1 to {MAX_KEY_CHARS} characters"
            )
        )
    elif isinstance(key, str) and not storable(key):
        errors.append(
            EventError(index, "idempotency_key", "must be valid UTF-8 text without NUL characters")
        )
    metadata_json: str | None = None
    if metadata is not None:
        if not isinstance(metadata, dict):
            errors.append(EventError(index, "metadata", "must be a JSON object"))
        else:
            metadata_json = _metadata_json(metadata)
            if not storable(metadata_json) or (
                "\\u0000" in metadata_json and _NUL_ESCAPE.search(metadata_json)
            ):
                errors.append(
                    EventError(index, "metadata", "must be valid UTF-8 text without NUL characters")
                )
            elif len(metadata_json.encode()) > MAX_METADATA_BYTES:
                errors.append(
                    EventError(index, "metadata", f"is larger than {MAX_METADATA_BYTES} bytes")
                )
    if len(errors) > before:
        return None
    assert amount is not None and timestamp is not None
    # every field checked above: tenant_id and the metric's key need no escaping (ID_RE, the
    # catalog's key pattern)
    return (  # type: ignore[return-value]
        tenant_id,
        metric_key,
        str(amount),
        timestamp,
        copy_text(key),  # type: ignore[arg-type]
        None if metadata_json is None else copy_text(metadata_json),
    )


def validate_events(
    events: list[Any], metrics: dict[str, Metric], now: datetime
) -> tuple[list[Row], list[EventError], list[int]]:
    """Rows to store, every problem found, and the indexes of the rows kept."""
    rows: list[Row] = []
    kept: list[int] = []
    errors: list[EventError] = []
    for index, event in enumerate(events):
        row = validate_event(index, event, metrics, now, errors)
        if row is not None:
            rows.append(row)
            kept.append(index)
    return rows, errors, kept


def _rfc3339_text(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 string such as 2026-10-01T12:00:00Z")
    return value


# An instant in a body: an RFC 3339 string with an offset, as the schema says (pydantic's
# lax mode would also take a number of seconds), that UTC can hold
Rfc3339 = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339_text),
    AfterValidator(lambda moment: in_utc(moment, moment.isoformat())),
]


def amount_schema(*, positive: bool) -> WithJsonSchema:
    """The published schema of an amount as parse_amount takes it: a JSON number or a
    decimal string, below 10^18 in magnitude, at most 12 decimals (positive: above 0)."""
    if positive:
        number = {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1e18}
        text = {"type": "string", "pattern": rf"^(?=.*[1-9]){AMOUNT_DIGITS}$"}
    else:
        number = {"type": "number", "exclusiveMinimum": -1e18, "exclusiveMaximum": 1e18}
        text = {"type": "string", "pattern": rf"^-?{AMOUNT_DIGITS}$"}
    return WithJsonSchema({"anyOf": [number, text]})


class EventIn(BaseModel):
    """One usage event."""

    tenant_id: str = Field(pattern=ID_PATTERN, examples=["acme"])
    metric: str = Field(
        pattern=KEY_PATTERN, description="A metric key in the catalog.", examples=["api_calls"]
    )
    amount: Annotated[Decimal | str, amount_schema(positive=False)] = Field(
        description="A finite decimal, JSON number or string; negative where the metric allows."
    )
    timestamp: datetime = Field(description="RFC 3339 with an offset, at most 5 min ahead.")
    idempotency_key: str = Field(min_length=1, max_length=MAX_KEY_CHARS)
    metadata: dict[str, Any] | None = Field(default=None, description="At most 4 KiB.")


class EventsRequest(BaseModel):
    events: list[EventIn] = Field(max_length=MAX_EVENTS)


class Rejected(BaseModel):
    index: int
    field: str
    message: str


class IngestResponse(BaseModel):
    accepted: int
    rejected: list[Rejected]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[Any] = []


class ErrorBody(BaseModel):
    error: ErrorDetail
