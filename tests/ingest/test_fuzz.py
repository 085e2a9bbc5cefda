"""Random bodies never make the API answer 5xx (hypothesis)."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
