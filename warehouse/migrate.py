"""Versioned SQL migrations for the ``raw`` and ``app`` schemas, applied once each, in order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg

from warehouse.currencies import MINOR_UNITS
from warehouse.db import relations_exist

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant shared by every process: concurrent `db up`s queue on it instead of racing.
_LOCK_KEY = 0x6B1_1176


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path


def available() -> list[Migration]:
    return [
        Migration(version=path.name.split("_", 1)[0], path=path)
        for path in sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    ]


def apply_migrations(conn: psycopg.Connection) -> list[str]:
    """Apply the migrations not applied yet, in one transaction; return their versions."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("create schema if not exists app")
        conn.execute(
            """create table if not exists app.schema_migrations (
                   version    text primary key,
                   name       text not null,
                   applied_at timestamptz not null default now())"""
        )
        done = {row[0] for row in conn.execute("select version from app.schema_migrations")}
        for migration in available():
            if migration.version in done:
                continue
            conn.execute(migration.path.read_text())
            conn.execute(
                "insert into app.schema_migrations (version, name) values (%s, %s)",
                (migration.version, migration.path.name),
            )
            applied_now.append(migration.version)
        with conn.cursor() as cur:
            cur.executemany(
                """insert into app.currencies (currency, minor_unit) values (%s, %s)
                   on conflict (currency) do update set minor_unit = excluded.minor_unit
                   where currencies.minor_unit <> excluded.minor_unit""",
                sorted(MINOR_UNITS.items()),
            )
    return applied_now


def pending_migrations(conn: psycopg.Connection) -> list[str]:
    """The versions not applied yet, read only (the API's role may not apply them)."""
    done: set[str] = set()
    if relations_exist(conn, "app.schema_migrations"):
        done = {row[0] for row in conn.execute("select version from app.schema_migrations")}
    return [m.version for m in available() if m.version not in done]
