"""POST /v1/quotas/check: atomic under concurrency, idempotent, seeded from the warehouse."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from billing.cli import main
from ingest.app import create_app
from tests.helpers import ApiServer
from tests.ingest.conftest import ADMIN_KEY
from warehouse.settings import get_settings

QUOTA_CATALOG = """
metrics:
  - {key: api_calls, aggregation: sum}
  - {key: emails, aggregation: count}
  - {key: exports, aggregation: sum}
  - {key: storage_gb, aggregation: max}
plans:
  - key: capped
    name: Capped
    interval: month
    currency: usd
    base_price: "10.00"
    charges:
      - metric: api_calls
        model: per_unit
        unit_price: "0.01"
        quota: {limit: 1000, policy: hard}
      - metric: emails
        model: per_unit
        unit_price: "0.01"
        quota: {limit: 5, policy: soft}
      - {metric: exports, model: per_unit, unit_price: "0.01"}
tenants:
  - {id: acme, name: Acme, currency: usd, tax_rate: "0"}
  - {id: globex, name: Globex, currency: usd, tax_rate: "0"}
  - {id: idle, name: Idle, currency: usd, tax_rate: "0"}
subscriptions:
  - {id: sub_acme, tenant_id: acme, plan: capped, start: "2026-01-01T00:00:00Z"}
  - {id: sub_globex, tenant_id: globex, plan: capped, start: "2026-01-01T00:00:00Z"}
"""
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def quota_catalog(warehouse: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BILLING_ADMIN_KEY", ADMIN_KEY)
    get_settings.cache_clear()
    path = tmp_path / "catalog.yaml"
    path.write_text(QUOTA_CATALOG)
    result = CliRunner().invoke(main, ["catalog", "apply", str(path)])
    assert result.exit_code == 0, result.output
    return warehouse


@pytest.fixture
def client(quota_catalog: str) -> Any:
    with TestClient(create_app(), headers=ADMIN) as test_client:
        yield test_client


def check(client: Any, amount: Any = 1, key: str | None = None, **extra: Any) -> Any:
    body = {"tenant_id": "acme", "metric": "api_calls", "amount": amount, **extra}
    if key is not None:
        body["idempotency_key"] = key
    return client.post("/v1/quotas/check", json=body)


def month_end() -> datetime:
    now = datetime.now(UTC)
    return (
        now.replace(day=1, hour=0, minute=0, second=0, microsecond=0) + timedelta(days=32)
    ).replace(day=1)


def test_sixteen_clients_never_get_past_a_hard_limit(quota_catalog: str) -> None:
    server = ApiServer(
        {"BILLING_DATABASE_URL": quota_catalog, "BILLING_ADMIN_KEY": ADMIN_KEY}, workers=2
    )
    server.start()
    outcomes: Counter[int] = Counter()
    replays: Counter[int] = Counter()
    lock = threading.Lock()

    def client_thread(n: int) -> None:
        with httpx.Client(base_url=server.url, headers=ADMIN, timeout=30) as http:
            for i in range(100):
                key = f"c{n}-{i}"
                first = check(http, 1, key)
                again = check(http, 1, key)  # a retry of the same check
                with lock:
                    outcomes[first.status_code] += 1
                    replays[again.status_code == first.status_code] += 1
                assert again.json()["replayed"] is True
                assert again.json()["used"] == first.json()["used"]

    try:
        threads = [threading.Thread(target=client_thread, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        last = check(httpx.Client(base_url=server.url, headers=ADMIN), 1)
    finally:
        server.stop()
    assert outcomes == {200: 1000, 429: 600}
    assert replays == {True: 1600}
    assert last.status_code == 429
    body = last.json()
    assert body == {
        "allowed": False,
        "used": "1000",
        "limit": "1000",
        "remaining": "0",
        "policy": "hard",
        "period_end": month_end().isoformat().replace("+00:00", "Z"),
        "overage": False,
        "replayed": False,
    }
    retry_after = int(last.headers["Retry-After"])
    expected = (month_end() - datetime.now(UTC)).total_seconds()
    assert abs(retry_after - expected) < 60
    with psycopg.connect(quota_catalog) as conn:
        used = conn.execute(
            "select used from app.quota_counters where tenant_id = 'acme'"
        ).fetchone()
    assert used is not None and used[0] == 1000


def test_counter_starts_from_the_warehouse_and_survives_a_restart(client: Any) -> None:
    now = datetime.now(UTC)
    stamp = max(
        now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), now - timedelta(minutes=1)
    )
    events = [
        {
            "tenant_id": "acme",
            "metric": "api_calls",
            "amount": "100",
            "timestamp": stamp.isoformat(),
            "idempotency_key": f"e{i % 4}",  # 8 events, 4 keys: 400 counted
        }
        for i in range(8)
    ]
    assert client.post("/v1/events", json={"events": events}).status_code == 200
    first = check(client, 1)
    assert first.status_code == 200
    assert first.json()["used"] == "401"
    assert check(client, 599).json()["remaining"] == "0"
    with TestClient(create_app(), headers=ADMIN) as restarted:
        after = check(restarted, 1)
    assert after.status_code == 429
    assert after.json()["used"] == "1000"


def test_soft_limits_allow_and_flag_overage(client: Any) -> None:
    answers = [check(client, 1, metric="emails").json() for _ in range(7)]
    assert [a["allowed"] for a in answers] == [True] * 7
    assert [a["overage"] for a in answers] == [False] * 5 + [True] * 2
    assert answers[-1]["used"] == "7" and answers[-1]["remaining"] == "0"
    assert answers[-1]["policy"] == "soft"


def test_a_metric_without_quota_is_allowed_and_counted(client: Any) -> None:
    answer = check(client, "2.5", metric="exports").json()
    assert answer["allowed"] is True and answer["policy"] == "none"
    assert answer["limit"] is None and answer["remaining"] is None
    assert check(client, "0.5", metric="exports").json()["used"] == "3"


def test_amounts_and_keys_reach_the_counter_exactly(client: Any) -> None:
    """The checks travel to PostgreSQL as JSON text: an exponent, the smallest fraction and
    a key of any script arrive as sent."""
    amounts = ["1e3", "0.000001", "123456789012345.123456", "0.1", "0.2"]
    answers = [check(client, amount, metric="exports").json() for amount in amounts]
    assert answers[-1]["used"] == "123456789013345.423457"
    first = check(client, "1", key="clé ✓ 鍵", metric="exports").json()
    again = check(client, "1", key="clé ✓ 鍵", metric="exports").json()
    assert first["used"] == again["used"] == "123456789013346.423457"
    assert (first["replayed"], again["replayed"]) == (False, True)


def test_each_tenant_has_its_own_counter(client: Any) -> None:
    assert check(client, 1000).status_code == 200
    assert check(client, 1).status_code == 429
    assert check(client, 1000, tenant_id="globex").status_code == 200


def test_bad_checks_name_the_field(client: Any, quota_catalog: str) -> None:
    cases = {
        "amount": [check(client, 0), check(client, -1), check(client, "NaN"), check(client, "x")],
        "metric": [check(client, 1, metric="nope"), check(client, 1, metric="storage_gb")],
        "tenant_id": [check(client, 1, tenant_id="idle"), check(client, 1, tenant_id="a b")],
        "idempotency_key": [check(client, 1, key="")],
        "surprise": [check(client, 1, surprise=True)],
    }
    for field, responses in cases.items():
        for response in responses:
            assert response.status_code == 422, (field, response.text)
            assert field in [d["field"] for d in response.json()["error"]["details"]], response.text
    with psycopg.connect(quota_catalog) as conn:
        assert conn.execute("select count(*) from app.quota_checks").fetchone() == (0,)


def test_a_tenant_key_checks_only_its_own_tenant(client: Any, quota_catalog: str) -> None:
    result = CliRunner().invoke(main, ["apikey", "create", "--tenant", "acme"])
    key = result.stdout.strip().splitlines()[-1]
    tenant = {"Authorization": f"Bearer {key}"}
    body = {"tenant_id": "globex", "metric": "api_calls", "amount": 1}
    assert client.post("/v1/quotas/check", json=body, headers=tenant).status_code == 403
    body["tenant_id"] = "acme"
    assert client.post("/v1/quotas/check", json=body, headers=tenant).status_code == 200
    assert client.post("/v1/quotas/check", json=body, headers={}).status_code == 200  # admin
    assert (
        client.post("/v1/quotas/check", json=body, headers={"Authorization": ""}).status_code == 401
    )


def test_a_check_follows_subscription_and_catalog_changes(client: Any, tmp_path: Path) -> None:
    """A counter keeps the plan it looked up (app.quota_check): the tenant's own change,
    one it scheduled for a moment later, and a new version of the plan each apply to the
    next check."""
    tight = QUOTA_CATALOG.replace(
        "tenants:",
        """  - key: tight
    name: Tight
    interval: month
    currency: usd
    base_price: "5.00"
    charges:
      - metric: api_calls
        model: per_unit
        unit_price: "0.01"
        quota: {limit: 20, policy: hard}
tenants:""",
    )

    def apply(text: str) -> None:
        path = tmp_path / "catalog.yaml"
        path.write_text(text)
        result = CliRunner().invoke(main, ["catalog", "apply", str(path)])
        assert result.exit_code == 0, result.output

    def answer(amount: int) -> tuple[int, str, str]:
        response = client.post(
            "/v1/quotas/check",
            json={"tenant_id": "acme", "metric": "api_calls", "amount": amount},
            headers=acme,
        )
        return response.status_code, response.json()["used"], response.json()["limit"]

    def change_plan(plan: str, at: datetime | None = None) -> None:
        body = {"plan": plan} | ({"at": at.isoformat()} if at else {})
        changed = client.post("/v1/subscriptions/sub_acme/change-plan", json=body, headers=acme)
        assert changed.status_code == 200, changed.text

    apply(tight)
    key = CliRunner().invoke(main, ["apikey", "create", "--tenant", "acme"])
    acme = {"Authorization": f"Bearer {key.stdout.strip().splitlines()[-1]}"}
    assert answer(10) == (200, "10", "1000")
    change_plan("tight")
    assert answer(15) == (429, "10", "20")
    assert answer(10) == (200, "20", "20")
    back_at = datetime.now(UTC) + timedelta(seconds=2)
    change_plan("capped", back_at)
    assert answer(1) == (429, "20", "20")  # not yet
    time.sleep(max(0.0, (back_at - datetime.now(UTC)).total_seconds()) + 0.1)
    assert answer(1) == (200, "21", "1000")
    apply(tight.replace("limit: 1000", "limit: 21"))  # a new version of capped
    assert answer(1) == (429, "21", "21")


def test_checks_arriving_together_share_a_statement(quota_catalog: str) -> None:
    """Checks that arrive while a worker's statement is out go together in the next one
    (ingest.quotas.QuotaLane), with the answers they would get one at a time; a key sent
    for two metrics at once is still one check, the other a replay."""

    def body(metric: str, amount: int, key: str | None = None) -> dict[str, Any]:
        return {"tenant_id": "acme", "metric": metric, "amount": amount, "idempotency_key": key}

    async def send_all() -> list[httpx.Response]:
        app = create_app()
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://api", headers=ADMIN
            ) as api,
        ):
            for metric, amount in (("api_calls", 10), ("exports", 1), ("emails", 1)):
                # the month's counters exist: the checks below are all in their first round
                assert (await api.post("/v1/quotas/check", json=body(metric, amount))).is_success
            bodies = [body("api_calls", 30, str(k)) for k in range(40)]
            bodies += [body(metric, 1, "twice") for metric in ("exports", "emails")]
            return await asyncio.gather(
                *(api.post("/v1/quotas/check", json=body) for body in bodies)
            )

    answers = asyncio.run(send_all())
    calls, twice = answers[:40], answers[40:]
    assert Counter(a.status_code for a in calls) == {200: 33, 429: 7}  # 10 + 33 x 30 = 1000
    assert max(Decimal(a.json()["used"]) for a in calls) == 1000
    assert [a.status_code for a in twice] == [200, 200], twice[0].text
    assert sorted(a.json()["replayed"] for a in twice) == [False, True]
    with psycopg.connect(quota_catalog) as conn:
        checks, statements = conn.execute(
            "select count(*), count(distinct xmin::text) from app.quota_checks"
        ).fetchone() or (0, 0)
        used = dict(
            conn.execute(
                "select metric, used from app.quota_counters where tenant_id = 'acme'"
            ).fetchall()
        )
    assert checks == 41 and statements < checks  # the transactions that wrote them
    assert used["api_calls"] == 1000 and used["exports"] + used["emails"] == 3
