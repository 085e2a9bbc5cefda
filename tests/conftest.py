"""Shared fixtures: one embedded PostgreSQL for the session, a fresh database per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.helpers import with_dbname
from warehouse import embedded
from warehouse.settings import get_settings


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One embedded server for the whole session, stopped at the end."""
    home = tmp_path_factory.mktemp("home")
    url = embedded.ensure_running(home / "pgdata")
    yield url
    embedded.stop(home / "pgdata")


@pytest.fixture
def warehouse(server_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty database; BILLING_DATABASE_URL points at it for this test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = with_dbname(server_url, name)
    monkeypatch.setenv("BILLING_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
