"""Random bodies never make the API answer 5xx, nor its reader raise what its callers do not
catch (hypothesis)."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.bodies import loads

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=80),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
fields = st.sampled_from(
    ["tenant_id", "metric", "amount", "timestamp", "idempotency_key", "metadata", "x"]
)
plausible = st.fixed_dictionaries(
    {
        "tenant_id": st.one_of(st.sampled_from(["acme", "globex", "a;b", ""]), json_values),
        "metric": st.one_of(st.sampled_from(["api_calls", "seats", "nope"]), json_values),
        "amount": st.one_of(
            st.decimals(allow_nan=True, allow_infinity=True).map(str),
            st.sampled_from(["1e400", "-1", "0.1", "1E-20", " 5 "]),
            json_values,
        ),
        "timestamp": st.one_of(
            st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
            st.sampled_from(["2026-10-01T00:00:00Z", "2026-13-01T00:00:00Z", "yesterday"]),
            json_values,
        ),
        "idempotency_key": st.one_of(st.text(max_size=140), json_values),
    },
    optional={"metadata": json_values, "x": json_values},
)
bodies = st.one_of(
    st.builds(lambda evs: json.dumps({"events": evs}), st.lists(plausible, max_size=5)),
    st.builds(json.dumps, json_values),
    st.dictionaries(fields, json_values).map(lambda e: json.dumps({"events": [e]})),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies, ndjson=st.booleans(), partial=st.booleans())
def test_no_body_makes_a_5xx(api: TestClient, body: str, ndjson: bool, partial: bool) -> None:
    headers = {"content-type": "application/x-ndjson" if ndjson else "application/json"}
    response = api.post(
        f"/v1/events?partial={str(partial).lower()}", content=body.encode(), headers=headers
    )
    assert response.status_code < 500, (body, response.text)
    payload: Any = response.json()
    if response.status_code >= 400:
        assert set(payload["error"]) == {"code", "message", "details"}


numbers = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.integers(min_value=1, max_value=5000).map(lambda digits: "-" + "9" * digits),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["1e400", "-0", "-0.0", "1E+2", "0.1e-999", "01", "1.", ".5", "NaN"]),
    st.just("1e9999999999999999999999"),  # past every Decimal's exponent
)
odd = st.sampled_from(
    ['"\\ud800"', '{"k": "\\udfff x"}', "\ufeff{}", "[" * 1100 + "]" * 1100, '{"a": 1, "a": 2}']
)
texts = st.one_of(
    bodies, numbers, odd, st.builds(json.dumps, json_values, ensure_ascii=st.booleans())
)


@settings(max_examples=500, deadline=None)
@given(
    text=texts,
    cut=st.integers(min_value=0, max_value=300),
    noise=st.binary(max_size=3),
    as_bytes=st.booleans(),
)
def test_every_body_is_read_or_refused_with_a_value_error(
    text: str, cut: int, noise: bytes, as_bytes: bool
) -> None:
    """ingest.bodies.loads reads a body, valid or broken, or refuses it with the errors its
    callers turn into a 400 or a rejected line (ValueError, UnicodeDecodeError), never
    another exception (a 500); a number with a fraction or an exponent is an exact
    Decimal, never a float."""
    raw = text.encode("utf-8", "surrogatepass")
    raw = raw[:cut] + noise + raw[cut:]
    body: bytes | str = raw if as_bytes else raw.decode("utf-8", "replace")
    try:
        value = loads(body)
    except (ValueError, UnicodeDecodeError):
        return
    pending = [value]
    while pending:  # without recursion: a value may be nested hundreds deep
        item = pending.pop()
        assert not isinstance(item, float), (body, item)
        if isinstance(item, dict):
            pending += item.values()
        elif isinstance(item, list):
            pending += item


def test_a_number_no_decimal_holds_is_a_400(api: TestClient) -> None:
    """A JSON number whose exponent no Decimal holds was a 500 (decimal.InvalidOperation
    escaped the reader); it is a malformed body."""
    event = (
        '{"tenant_id": "acme", "metric": "api_calls", "amount": 1e9999999999999999999999, '
        '"timestamp": "2026-10-01T00:00:00Z", "idempotency_key": "huge"}'
    )
    for body, content_type in (
        (f'{{"events": [{event}]}}', "application/json"),
        (event, "application/x-ndjson"),
    ):
        response = api.post(
            "/v1/events", content=body.encode(), headers={"content-type": content_type}
        )
        assert response.status_code == 400, response.text
        assert "1e9999999999999999999999 is out of range" in response.json()["error"]["message"]
