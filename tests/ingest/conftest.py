"""Fixtures for the API: a catalog loaded, an admin key, a tenant key, a live server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from billing.cli import main
from ingest.app import create_app
from tests.helpers import REPO, ApiServer
from warehouse.settings import get_settings

ADMIN_KEY = "test-admin-key"


@pytest.fixture
def catalog_loaded(warehouse: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BILLING_ADMIN_KEY", ADMIN_KEY)
    get_settings.cache_clear()
    result = CliRunner().invoke(
        main, ["catalog", "apply", str(REPO / "examples" / "demo_catalog.yaml")]
    )
    assert result.exit_code == 0, result.output
    return warehouse


@pytest.fixture
def api(catalog_loaded: str) -> Iterator[TestClient]:
    with TestClient(create_app(), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        yield client


@pytest.fixture
def acme_key(catalog_loaded: str) -> str:
    result = CliRunner().invoke(main, ["apikey", "create", "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def server(catalog_loaded: str) -> Iterator[ApiServer]:
    srv = ApiServer({"BILLING_DATABASE_URL": catalog_loaded, "BILLING_ADMIN_KEY": ADMIN_KEY})
    srv.start()
    yield srv
    srv.stop()
