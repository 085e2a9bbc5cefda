"""Hostile input gets a 4xx in the one error shape, never a 500 (issue: the edges)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict

from tests.ingest.test_events_api import event, stored

NOW = datetime.now(UTC).replace(microsecond=0)


def assert_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("amount", ["1e1000000", "-1e1000000", "1e-1000000"])
def test_an_amount_beyond_decimals_range_is_a_422_naming_it(
    api: TestClient, catalog_loaded: str, amount: str
) -> None:
    for body in (
        f'{{"events": [{{"tenant_id": "acme", "metric": "api_calls", "amount": {amount}, '
        f'"timestamp": "{(NOW - timedelta(hours=1)).isoformat()}", "idempotency_key": "k"}}]}}',
        f'{{"events": [{{"tenant_id": "acme", "metric": "api_calls", "amount": "{amount}", '
        f'"timestamp": "{(NOW - timedelta(hours=1)).isoformat()}", "idempotency_key": "k"}}]}}',
    ):
        response = api.post(
            "/v1/events", content=body, headers={"Content-Type": "application/json"}
        )
        error = assert_error(response, 422)
        assert error["details"][0]["field"] == "amount"
    assert stored(catalog_loaded) == 0
    for raw in (amount, f'"{amount}"'):
        response = api.post(
            "/v1/quotas/check",
            content=f'{{"tenant_id": "acme", "metric": "api_calls", "amount": {raw}}}',
            headers={"Content-Type": "application/json"},
        )
        assert_error(response, 422)


@pytest.mark.parametrize("route", ["/v1/events", "/v1/quotas/check", "/v1/subscriptions"])
def test_json_nested_a_thousand_deep_is_a_400(api: TestClient, route: str) -> None:
    body = '{"events": ' + "[" * 1000 + "]" * 1000 + "}"
    response = api.post(route, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert_error(response, response.status_code)


def test_a_lone_surrogate_in_a_field_name_is_named_and_the_error_encodes(
    api: TestClient, catalog_loaded: str
) -> None:
    bad = event(1)
    body = (
        '{"events": ['
        + __import__("json").dumps(event(0))
        + ", "
        + __import__("json").dumps(bad)[:-1]
        + ', "x\\ud800y": 1}]}'
    )
    response = api.post(
        "/v1/events?partial=true", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    (rejected,) = response.json()["rejected"]
    assert rejected["index"] == 1 and "\\ud800" in rejected["field"]
    assert stored(catalog_loaded) == 1


def test_a_nul_in_a_metric_or_an_id_is_a_4xx(api: TestClient) -> None:
    response = api.get(
        "/v1/usage",
        params={
            "tenant_id": "acme",
            "metric": "api\x00calls",
            "from": "2026-10-01",
            "to": "2026-10-02",
        },
    )
    assert_error(response, 422)
    response = api.post("/v1/subscriptions/sub%00x/cancel", json={"at_period_end": True})
    assert response.status_code in (404, 422), response.text
    assert_error(response, response.status_code)


@pytest.mark.parametrize(
    "body",
    [
        {"at_period_end": 0},  # a number is not a boolean
        {"at_period_end": "true"},
        {"at_period_end": True, "at": 1790000000},  # seconds are not an RFC 3339 instant
    ],
)
def test_a_subscription_change_takes_the_types_the_schema_says(
    api: TestClient, body: dict[str, Any]
) -> None:
    """schemathesis found a cancel with `at_period_end: 0` carried out: pydantic's lax mode
    took 0 for false. Nothing changes, the field is named."""
    refused = api.post("/v1/subscriptions/sub_acme/cancel", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["details"][0]["field"] in body
    state = api.post("/v1/subscriptions/sub_acme/change-plan", json={"plan": "starter"})
    assert state.status_code == 200, state.text  # still active: the cancel did not happen


def test_the_last_representable_day_is_a_422_not_an_overflow(api: TestClient) -> None:
    response = api.get(
        "/v1/usage",
        params={
            "tenant_id": "acme",
            "metric": "api_calls",
            "from": "9999-12-30",
            "to": "9999-12-31",
        },
    )
    error = assert_error(response, 422)
    # the calendar's rule, the CLI's too (orchestration.dbt_vars.parse_day)
    assert error["message"] == "to: 9999-12-31 is past the calendar's last day, 9999-12-30"
    assert error["details"] == [{"field": "to", "message": error["message"][4:]}]


def test_healthz_says_nothing_of_the_failure(
    api: TestClient, catalog_loaded: str, server_url: str
) -> None:
    assert api.get("/healthz").status_code == 200
    name = conninfo_to_dict(catalog_loaded)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:  # the warehouse goes away
        conn.execute(f'alter database "{name}" allow_connections false')  # type: ignore[arg-type]
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (name,)
        )
    error = assert_error(api.get("/healthz"), 503)
    assert error["message"] == "the warehouse does not answer"  # never why, unauthenticated
    assert name not in str(error)


def post_until_answered(port: int, path: str, *, declared: int | None) -> tuple[int, int]:
    """POST an endless body of spaces (with a Content-Length of ``declared``, or chunked)
    until the server answers; return its status and how many body bytes were sent."""
    import socket

    from tests.ingest.conftest import ADMIN_KEY

    sock = socket.create_connection(("127.0.0.1", port))
    length = f"Content-Length: {declared}" if declared else "Transfer-Encoding: chunked"
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {ADMIN_KEY}\r\n"
        "Content-Type: application/json\r\nStripe-Signature: t=1,v1=00\r\n"
        f"{length}\r\n\r\n".encode()
    )
    sent, answer = 0, b""
    chunk = b" " * 65536
    framed = chunk if declared else b"%x\r\n%s\r\n" % (len(chunk), chunk)
    sock.settimeout(0.02)
    try:
        while sent < 64 * 1024 * 1024 and not answer:
            try:
                answer = sock.recv(4096)
            except TimeoutError:
                sock.sendall(framed)
                sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.settimeout(5)
    answer = answer or sock.recv(4096)
    sock.close()
    return int(answer.split(b" ", 2)[1]), sent


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/v1/events", 5 * 1024 * 1024),
        ("/v1/quotas/check", 64 * 1024),
        ("/v1/subscriptions", 64 * 1024),
        ("/v1/subscriptions/sub_acme/cancel", 64 * 1024),
        ("/v1/webhooks/stripe", 1024 * 1024),
    ],
)
def test_every_body_is_capped_before_it_is_read(catalog_loaded: str, path: str, limit: int) -> None:
    from tests.helpers import ApiServer
    from tests.ingest.conftest import ADMIN_KEY

    server = ApiServer(
        {
            "BILLING_DATABASE_URL": catalog_loaded,
            "BILLING_ADMIN_KEY": ADMIN_KEY,
            "BILLING_STRIPE_WEBHOOK_SECRET": "whsec_test",
        }
    ).start()
    try:
        # a declared length over the cap: refused before a byte of the body is read
        status, sent = post_until_answered(server.port, path, declared=100 * 1024 * 1024)
        assert status == 413 and sent <= 4 * 65536, (status, sent)
        # no length: refused once the cap is passed, not at the end of the body
        status, sent = post_until_answered(server.port, path, declared=None)
        assert status == 413 and sent <= limit + 2 * 1024 * 1024, (status, sent)
    finally:
        server.stop()
