"""Connections to the warehouse, embedded or external, and the settings dbt needs to reach it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import MAXYEAR, MINYEAR, UTC, datetime
from typing import Any

import psycopg

from warehouse import embedded
from warehouse.settings import Settings, get_settings


def in_utc(moment: datetime, value: Any) -> datetime:
    """``moment`` (aware), refused (ValueError naming ``value``, as sent) when UTC cannot
    hold it: on the calendar's first or last day an offset can take an instant past it.
    PostgreSQL stores 0001-01-01T00:00:00+05:00 as a time in 1 BC, which Python cannot read
    back: one such event made every daily run fail."""
    if moment.year in (MINYEAR, MAXYEAR):  # elsewhere any offset stays inside the calendar
        try:
            moment.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{value!r} is out of range in UTC") from None
    return moment


def database_url(settings: Settings | None = None, *, start: bool = True, api: bool = False) -> str:
    """The warehouse URL: the external one, or the embedded server's (started if needed).

    With ``api``, the URL of the API's role (billing_api: insert into raw, read what it
    serves); else the owner's, which migrations, dbt and the CLI use."""
    settings = settings or get_settings()
    if api and settings.api_database_url:
        return settings.api_database_url
    if settings.database_url:
        return settings.database_url
    role = embedded.API_ROLE if api else embedded.SUPERUSER
    if start:
        return embedded.ensure_running(settings.pgdata, role)
    uri = embedded.running_uri(settings.pgdata, role)
    if uri is None:
        raise embedded.EmbeddedError(
            f"the embedded warehouse in {settings.pgdata} is not running (run `billing db up`)"
        )
    return uri


def relations_exist(conn: psycopg.Connection[Any], *relations: str) -> bool:
    """Whether every one of ``relations`` (``schema.name``: a table or a view) exists: what
    dbt or the migrations build, read before anything reads it."""
    row = conn.execute(
        "select bool_and(to_regclass(name) is not null) from unnest(%s::text[]) as name",
        (list(relations),),
    ).fetchone()
    return bool(row and row[0])


@contextmanager
def connect(
    settings: Settings | None = None, *, autocommit: bool = False
) -> Iterator[psycopg.Connection]:
    """A connection that commits on a clean exit and rolls back on an error."""
    with psycopg.connect(database_url(settings), autocommit=autocommit) as conn:
        yield conn
