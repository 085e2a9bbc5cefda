"""Quota checks per second and their latency, against GET /healthz in the same run.

A scratch embedded warehouse gets a plan with a hard quota far above what the run uses;
`billing serve` runs with N workers; C keep-alive connections (a small HTTP/1.1 client
driving every connection from one thread through one selector, so that the load generator
takes as little as it can of the two cores it shares with the server) send checks back
to back for D seconds, each with its own idempotency key. The baseline is the same load
on GET /healthz, which does one `select 1` per request.

A third run offers a fixed rate (default 2,000 checks/s, open loop) and reports the
latency counted from when each request was due. The same open-loop load against a no-op
ASGI app (bench.noop_asgi) under the same uvicorn and workers is the floor of that latency:
what the machine and the load generator add before the server does any work.
Each run also reports the cores the hypervisor took meanwhile (steal time, on average and
in its worst tenth of a second): on a virtual machine a run's tail follows them.

    python -m bench.quota_bench --seconds 10 --connections 16 --workers 2 --rate 2000
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.common import (
    api_server,
    billing,
    hypervisor_steal,
    noop_server,
    scratch_warehouse,
    stolen_text,
)

ADMIN_KEY = "bench-admin-key"
CATALOG = """
metrics:
  - {key: api_calls, aggregation: sum}
plans:
  - key: capped
    name: Capped
    interval: month
    currency: usd
    base_price: "10.00"
    charges:
      - metric: api_calls
        model: per_unit
        unit_price: "0.0001"
        quota: {limit: 1000000000, policy: hard}
tenants:
"""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    # cores the hypervisor took meanwhile (bench.common.Steal): on average, at the worst
    steal_cores: float | None
    steal_worst_cores: float | None


@dataclass(frozen=True)
class QuotaResult:
    tenants: int
    connections: int
    workers: int
    seconds: float
    rate: float
    quota: LoadResult
    healthz: LoadResult
    quota_at_rate: LoadResult
    floor_at_rate: LoadResult

    @property
    def ratio(self) -> float:
        return self.quota.per_second / self.healthz.per_second


Requests = Callable[[int], Callable[[int], bytes]]  # connection -> request number -> bytes


@dataclass
class _Connection:
    """One keep-alive connection of the load generator and its request in flight."""

    sock: socket.socket
    make_request: Callable[[int], bytes]
    due: float  # when its next request is due (open loop)
    sent: int = 0
    started: float | None = None  # when the request in flight was due, or sent
    buffer: bytes = b""


def _answer(buffer: bytes) -> tuple[int, int] | None:
    """(status, bytes used) of the complete HTTP response at the start of ``buffer``."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffer[:end].lower()
    at = head.find(b"content-length:")
    line_end = head.find(b"\r\n", at)
    length = int(head[at + 15 : line_end if line_end >= 0 else end]) if at >= 0 else 0
    if len(buffer) < end + 4 + length:
        return None
    return int(buffer[9:12]), end + 4 + length


def _load(
    port: int,
    connections: int,
    seconds: float,
    make_request: Requests,
    rate: float | None = None,
) -> LoadResult:
    """``connections`` keep-alive connections, one request in flight each, driven from one
    thread (a socket is read when the selector finds an answer arriving): back to back
    (closed loop), or each connection one request every ``connections / rate`` seconds,
    the connections taking turns (open loop: the latency counts from when the request was
    due, so a stall is not hidden)."""
    interval = connections / rate if rate else None
    latencies: list[float] = []
    errors: list[int] = []
    # select(2) waits to the microsecond; epoll's wait is in milliseconds, which Python
    # rounds up, so a request due in 0.1 ms went out up to 1 ms late, counted as latency
    selector = selectors.SelectSelector()
    started = time.perf_counter()
    deadline = started + seconds
    open_ = []
    for c in range(connections):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        offset = c / rate + interval if rate and interval else 0.0
        connection = _Connection(sock, make_request(c), started + offset)
        selector.register(sock, selectors.EVENT_READ, connection)
        open_.append(connection)

    def send(connection: _Connection, now: float) -> None:
        connection.started = connection.due if interval is not None else now
        if interval is not None:
            connection.due += interval
        connection.sock.sendall(connection.make_request(connection.sent))
        connection.sent += 1

    with hypervisor_steal() as steal:
        try:
            while True:
                now = time.perf_counter()
                for connection in open_:
                    idle = connection.started is None and now < deadline
                    if idle and (interval is None or connection.due <= now):
                        send(connection, now)
                busy = any(c.started is not None for c in open_)
                # a closed loop sends again as soon as an answer arrives: nothing is due later
                due = (
                    []
                    if interval is None
                    else [c.due for c in open_ if c.started is None and c.due < deadline]
                )
                if not busy and (not due or now >= deadline):
                    break
                timeout = max(0.0, min(due) - now) if due else None
                for key, _ in selector.select(timeout):
                    connection = key.data
                    data = connection.sock.recv(65536)
                    if not data:
                        raise RuntimeError("the server closed a keep-alive connection")
                    connection.buffer += data
                    answer = _answer(connection.buffer)
                    if answer is None:
                        continue
                    status, used = answer
                    connection.buffer = connection.buffer[used:]
                    latencies.append(time.perf_counter() - (connection.started or 0.0))
                    connection.started = None
                    if status != 200:
                        errors.append(status)
        finally:
            selector.close()
            for connection in open_:
                connection.sock.close()
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return LoadResult(
        requests=len(ordered),
        per_second=len(ordered) / elapsed,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=ordered[int(len(ordered) * 0.99) - 1] * 1000,
        errors=len(errors),
        steal_cores=steal.mean_cores,
        steal_worst_cores=steal.worst_cores,
    )


def _quota_requests(tenants: int, port: int) -> Requests:
    def for_connection(c: int) -> Callable[[int], bytes]:
        def request(n: int) -> bytes:
            body = json.dumps(
                {
                    "tenant_id": f"t{(c * 7919 + n) % tenants}",
                    "metric": "api_calls",
                    "amount": 1,
                    "idempotency_key": f"c{c}-{n}",
                }
            ).encode()
            return (
                f"POST /v1/quotas/check HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body

        return request

    return for_connection


def _healthz_requests(port: int) -> Requests:
    raw = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    return lambda c: lambda n: raw


def run(
    seconds: float, connections: int, workers: int, tenants: int, port: int, rate: float
) -> QuotaResult:
    with scratch_warehouse() as (_, env):
        catalog = CATALOG + "".join(
            f"  - {{id: t{i}, name: T{i}, currency: usd}}\n" for i in range(tenants)
        )
        catalog += "subscriptions:\n" + "".join(
            f"  - {{id: s{i}, tenant_id: t{i}, plan: capped, start: '2026-01-01T00:00:00Z'}}\n"
            for i in range(tenants)
        )
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
            file.write(catalog)
            file.flush()
            billing(env, "catalog", "apply", file.name)
        env = {**env, "BILLING_ADMIN_KEY": ADMIN_KEY}
        with api_server(env, port, workers):
            _load(port, connections, min(seconds, 2.0), _quota_requests(tenants, port))  # warm
            healthz = _load(port, connections, seconds, _healthz_requests(port))
            quota = _load(port, connections, seconds, _quota_requests(tenants, port))
            at_rate = _load(port, connections, seconds, _quota_requests(tenants, port), rate)
    with noop_server(port, workers):
        floor = _load(port, connections, seconds, _quota_requests(tenants, port), rate)
    for name, load in (
        ("checks", quota),
        ("healthz", healthz),
        ("checks at a rate", at_rate),
        ("the no-op app at a rate", floor),
    ):
        if load.errors:  # a figure of failed requests measures nothing
            raise RuntimeError(f"{name}: {load.errors} of {load.requests} answers were not 200")
    return QuotaResult(tenants, connections, workers, seconds, rate, quota, healthz, at_rate, floor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--port", type=int, default=18_081)
    parser.add_argument(
        "--rate", type=float, default=2_000, help="Offered checks/s of the open-loop run."
    )
    parser.add_argument("--json", type=Path, help="Also write the result here.")
    args = parser.parse_args()
    result = run(args.seconds, args.connections, args.workers, args.tenants, args.port, args.rate)
    for name, load in (
        ("quota, max", result.quota),
        ("healthz, max", result.healthz),
        (f"quota at {args.rate:,.0f}/s", result.quota_at_rate),
        (f"no-op at {args.rate:,.0f}/s", result.floor_at_rate),
    ):
        print(
            f"{name:>18}: {load.per_second:,.0f}/s  p50 {load.p50_ms:.2f} ms  "
            f"p99 {load.p99_ms:.2f} ms  ({load.requests:,} requests, {load.errors} non-200; "
            f"the hypervisor took {stolen_text(load.steal_cores, load.steal_worst_cores)} cores)"
        )
    print(f"ratio quota/healthz throughput: {result.ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps(asdict(result) | {"ratio": result.ratio}, indent=2))


if __name__ == "__main__":
    main()
