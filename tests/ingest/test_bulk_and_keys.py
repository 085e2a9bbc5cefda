"""`billing ingest FILE` (NDJSON, CSV) and `billing apikey create|list|revoke`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
import pytest

from tests.helpers import billing
from warehouse.settings import get_settings


def rows(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return [
            (r[0], str(r[1]))
            for r in conn.execute("select idempotency_key, amount from raw.events order by 1")
        ]


def test_ndjson_file_stores_valid_lines_and_reports_rejects(
    catalog_loaded: str, tmp_path: Path
) -> None:
    good = {
        "tenant_id": "acme",
        "metric": "api_calls",
        "amount": "2.5",
        "timestamp": "2026-10-01T10:00:00Z",
        "idempotency_key": "n1",
    }
    lines = [
        json.dumps(good),
        "{not json",
        "",
        json.dumps({**good, "idempotency_key": "n2", "metric": "nope"}),
        json.dumps({**good, "idempotency_key": "n3", "amount": 4}),
    ]
    file = tmp_path / "events.ndjson"
    file.write_text("\n".join(lines) + "\n")
    result = billing("ingest", str(file))
    assert result.returncode == 2  # some lines were rejected
    assert f"{file}: line 2: (line): not valid JSON" in result.stderr
    assert f"{file}: line 4: metric: unknown metric 'nope'" in result.stderr
    assert "4 events read, 2 stored, 2 rejected" in result.stdout
    assert rows(catalog_loaded) == [("n1", "2.5"), ("n3", "4")]

    again = billing("ingest", str(file))  # same file twice: raw keeps both, dedup counts once
    assert "2 stored" in again.stdout


def test_csv_file_with_metadata(catalog_loaded: str, tmp_path: Path) -> None:
    file = tmp_path / "events.csv"
    file.write_text(
        "tenant_id,metric,amount,timestamp,idempotency_key,metadata\n"
        'acme,active_users,1,2026-10-01T10:00:00Z,c1,"{""user_id"": ""u1""}"\n'
        "acme,api_calls,7,2026-10-01T10:00:00Z,c2,\n"
    )
    result = billing("ingest", str(file), check=True)
    assert "2 events read, 2 stored, 0 rejected" in result.stdout
    with psycopg.connect(catalog_loaded) as conn:
        meta = conn.execute(
            "select metadata from raw.events where idempotency_key = 'c1'"
        ).fetchone()
    assert meta == ({"user_id": "u1"},)
    # as Excel saves "CSV UTF-8": a byte order mark first, CRLF line ends
    excel = tmp_path / "excel.csv"
    excel.write_bytes(
        b"\xef\xbb\xbftenant_id,metric,amount,timestamp,idempotency_key\r\n"
        b"acme,api_calls,3,2026-10-01T11:00:00Z,x1\r\n"
    )
    result = billing("ingest", str(excel), check=True)
    assert "1 events read, 1 stored, 0 rejected" in result.stdout


def test_csv_with_a_wrong_header_exits_2_and_stores_nothing(
    catalog_loaded: str, tmp_path: Path
) -> None:
    file = tmp_path / "bad.csv"
    file.write_text("tenant,metric,amount\nacme,api_calls,1\n")
    result = billing("ingest", str(file))
    assert result.returncode == 2
    assert "missing column 'tenant_id'" in result.stderr
    assert "unknown column 'tenant'" in result.stderr
    assert rows(catalog_loaded) == []


def test_all_or_nothing_stores_nothing_when_a_line_is_bad(
    catalog_loaded: str, tmp_path: Path
) -> None:
    file = tmp_path / "events.ndjson"
    good = {
        "tenant_id": "acme",
        "metric": "api_calls",
        "amount": "1",
        "timestamp": "2026-10-01T10:00:00Z",
        "idempotency_key": "a1",
    }
    file.write_text(json.dumps(good) + "\n" + json.dumps({**good, "amount": "x"}) + "\n")
    result = billing("ingest", "--all-or-nothing", str(file))
    assert result.returncode == 2
    assert "nothing stored" in result.stdout
    assert rows(catalog_loaded) == []


def test_apikey_is_printed_once_and_only_its_hash_is_stored(catalog_loaded: str) -> None:
    result = billing("apikey", "create", "--tenant", "acme", check=True)
    key = result.stdout.strip()
    assert key.startswith("bk_") and len(key) > 30
    with psycopg.connect(catalog_loaded) as conn:
        stored = conn.execute("select key_sha256, tenant_id from app.api_keys").fetchall()
        dump = str(conn.execute("select * from app.api_keys").fetchall())
    assert len(stored) == 1 and stored[0][1] == "acme"
    assert key not in dump
    import hashlib

    assert stored[0][0] == hashlib.sha256(key.encode()).hexdigest()
    assert billing("apikey", "create", "--tenant", "bad;tenant").returncode == 2


def test_admin_key_comes_from_the_environment(catalog_loaded: str) -> None:
    assert get_settings().admin_key is not None
    assert get_settings().admin_key.get_secret_value() == "test-admin-key"  # type: ignore[union-attr]


def worker_pids(parent: int) -> list[int]:
    """The worker processes uvicorn spawned under ``parent``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.minutes(0.2)
def test_apikey_list_and_revoke_every_worker_refuses_within_a_second(
    catalog_loaded: str,
) -> None:
    import time

    import httpx

    from tests.helpers import ApiServer
    from tests.ingest.conftest import ADMIN_KEY

    created = billing("apikey", "create", "--tenant", "acme", check=True)
    key = created.stdout.strip().splitlines()[-1]
    key_id = created.stderr.split()[1]
    listed = billing("apikey", "list", check=True).stdout
    assert key_id in listed and "acme" in listed and key not in listed

    # `billing serve` as a user starts it: a worker per CPU (2 here, and in CI)
    server = ApiServer(
        {"BILLING_DATABASE_URL": catalog_loaded, "BILLING_ADMIN_KEY": ADMIN_KEY}, workers=None
    ).start()
    try:
        assert server.process is not None
        cpus = os.cpu_count() or 1
        assert len(worker_pids(server.process.pid)) == (cpus if cpus > 1 else 0)
        # a second on its port cannot start: a failure (1), not uvicorn's own 3
        second = billing("serve", "--port", str(server.port), timeout=60)
        assert second.returncode == 1, second
        assert "Address already in use" in second.stderr
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as c:
            usage = {"metric": "api_calls", "from": "2026-10-01", "to": "2026-10-01"}
            # each on a new connection, so both workers see (and remember) the key
            for _ in range(10):
                response = httpx.get(
                    f"{server.url}/v1/usage",
                    params=usage,
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert response.status_code == 200, response.text
            assert billing("apikey", "revoke", key_id, check=True).returncode == 0
            revoked_at = time.monotonic()
            time.sleep(1.1)
            statuses = {
                httpx.get(
                    f"{server.url}/v1/usage",
                    params=usage,
                    headers={"Authorization": f"Bearer {key}"},
                ).status_code
                for _ in range(20)
            }
            assert statuses == {401}
            assert time.monotonic() - revoked_at < 5
            assert c.get("/healthz").status_code == 200
    finally:
        server.stop()
    assert key_id in billing("apikey", "list", "--tenant", "acme", check=True).stdout
    again = billing("apikey", "revoke", key_id)
    assert again.returncode == 0  # revoking twice changes nothing
    assert billing("apikey", "revoke", "key_nope").returncode == 2


def test_unknown_keys_never_evict_a_known_one(catalog_loaded: str) -> None:
    import secrets

    from psycopg_pool import ConnectionPool

    from ingest.auth import KeyResolver, create_api_key

    with psycopg.connect(catalog_loaded, autocommit=True) as conn:
        _, key = create_api_key(conn, "acme")
    with ConnectionPool(catalog_loaded, min_size=1, max_size=1) as pool:
        keys = KeyResolver(pool, admin_key=None, ttl=600, max_unknown=100)
        assert keys.resolve(key) is not None
        for _ in range(500):  # a flood of random keys
            assert keys.resolve("bk_" + secrets.token_urlsafe(32)) is None
        answered, principal = keys.cached(key)  # from memory, no lookup
        assert answered and principal is not None and principal.tenant_id == "acme"
        assert len(keys._unknown) == 100
