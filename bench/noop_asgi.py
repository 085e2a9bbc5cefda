"""A no-op ASGI app: every request is read and answered 200 with a small JSON body, the size
of a quota check's answer. `bench.quota_bench` serves it under the same uvicorn and workers
as `billing serve` to show what the machine and the load generator add before any work."""

from __future__ import annotations

from typing import Any

BODY = (
    b'{"allowed": true, "used": "1", "limit": "1000000000", "remaining": "999999999", '
    b'"policy": "hard", "period_end": "2026-12-01T00:00:00Z", "overage": false, '
    b'"replayed": false}'
)
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
