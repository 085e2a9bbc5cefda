"""Connections to the warehouse, embedded or external, and the settings dbt needs to reach it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from warehouse import embedded
from warehouse.settings import Settings, get_settings


def database_url(settings: Settings | None = None, *, start: bool = True) -> str:
    """The warehouse URL: the external one, or the embedded server's (started if needed)."""
    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    if start:
        return embedded.ensure_running(settings.pgdata)
    uri = embedded.running_uri(settings.pgdata)
    if uri is None:
        raise embedded.EmbeddedError(
            f"the embedded warehouse in {settings.pgdata} is not running (run `billing db up`)"
        )
    return uri


@contextmanager
def connect(
    settings: Settings | None = None, *, autocommit: bool = False
) -> Iterator[psycopg.Connection]:
    """A connection that commits on a clean exit and rolls back on an error."""
    with psycopg.connect(database_url(settings), autocommit=autocommit) as conn:
        yield conn
