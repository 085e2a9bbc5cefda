"""`billing ingest FILE` (NDJSON, CSV) and `billing apikey create`."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

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
