"""Every route, fuzzed from the published OpenAPI document by schemathesis (its CLI, as a
user would run it, against a live `billing serve`): no 5xx, every status and body as
documented, every error in the one shape, every $ref resolvable, schema-violating input
refused, schema-valid input answered (a catalog name it lacks: 422). Bounded: 20 examples
an operation, deterministic. What each check may answer, and why, is in
tests/ingest/schemathesis.toml; the hooks sign Stripe webhooks with the server's secret."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import REPO, ApiServer, billing
from tests.ingest.conftest import ADMIN_KEY

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
WEBHOOK_SECRET = "whsec_fuzz"


@pytest.fixture
def fuzzed_server(catalog_loaded: str) -> Iterator[ApiServer]:
    server = ApiServer(
        {
            "BILLING_DATABASE_URL": catalog_loaded,
            "BILLING_ADMIN_KEY": ADMIN_KEY,
            "BILLING_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
    ).start()
    yield server
    server.stop()


def test_every_reference_in_the_document_resolves(fuzzed_server: ApiServer) -> None:
    document = httpx.get(f"{fuzzed_server.url}/openapi.json").json()
    components = document["components"]["schemas"]
    refs = set(re.findall(r'"\$ref": "([^"]+)"', json.dumps(document)))
    assert refs and all(
        ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in components
        for ref in refs
    ), refs


@pytest.mark.minutes(0.4)
@pytest.mark.parametrize("caller", ["admin", "tenant"])
def test_schemathesis_finds_nothing(fuzzed_server: ApiServer, caller: str) -> None:
    key = ADMIN_KEY
    if caller == "tenant":
        key = billing("apikey", "create", "--tenant", "acme", check=True).stdout.split()[-1]
    result = subprocess.run(
        [
            SCHEMATHESIS,
            "--no-color",
            "--config-file",
            "tests/ingest/schemathesis.toml",
            "run",
            f"{fuzzed_server.url}/openapi.json",
            "--max-examples",
            "20",
            "--generation-deterministic",
            "--header",
            f"Authorization: Bearer {key}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.ingest.schemathesis_hooks",
            "FUZZ_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        },
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "22 selected / 22 total" in result.stdout  # every route was fuzzed
