"""A closed-loop HTTP load generator with persistent connections.

`concurrency` threads each hold ONE keep-alive `http.client` connection and send requests back
to back until a fixed total has been sent, so every server sees the same number of requests
and the same number of connections (no per-request TCP handshakes measured as server cost).
Threads suffice: each one spends its time blocked on the socket, and the generator's own CPU
use is measured and reported (`LevelResult.client_cpu`) to show it is not the bottleneck.
"""

from __future__ import annotations

import http.client
import itertools
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil

from tools.bench.stats import LevelResult, summarize

log = logging.getLogger("tools.bench.loadgen")


@dataclass(frozen=True)
class Request:
    """What every request of a level sends: one URL, one body, fixed headers."""

    url: str
    body: bytes
    headers: Mapping[str, str]
    method: str = "POST"


class _Connection:
    """One keep-alive connection that reconnects after the server closed it."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def send(self, request: Request) -> tuple[int, str]:
        """Send once; (status, error text or "") after reading the whole response."""
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(request.method, self.path, request.body, dict(request.headers))
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.close()
                error = "" if resp.status == 200 else f"{resp.status}: {data[:200]!r}"
                return resp.status, error
            except (OSError, http.client.HTTPException) as exc:
                # A server may drop an idle keep-alive connection: retry once on a fresh one.
                self.close()
                if attempt == 1:
                    return 0, f"{type(exc).__name__}: {exc}"
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run_level(
    request: Request,
    concurrency: int,
    total: int,
    *,
    warmup: int | None = None,
    timeout: float = 300,
    max_seconds: float | None = None,
) -> LevelResult:
    """Send `total` requests with `concurrency` connections in flight; summarise them.

    `max_seconds` bounds a level on a slow server: no new request starts after it (the
    requests in flight finish), so the level reports fewer requests instead of stalling the
    run; throughput is still successful requests / wall time.

    `warmup` requests (default: 2 per connection) go first on the same connections and are
    not counted, so lazy initialisation (first batch, JIT, worker start) is not measured.
    """
    if concurrency < 1 or total < 1:
        raise ValueError("concurrency and total must be >= 1")
    warmup = 2 * concurrency if warmup is None else warmup
    conns = [_Connection(request.url, timeout) for _ in range(concurrency)]
    try:
        if warmup:
            _drive(conns, request, warmup, max_seconds)
        proc = psutil.Process()
        cpu0 = proc.cpu_times()
        start = time.perf_counter()
        latencies, statuses, errors = _drive(conns, request, total, max_seconds)
        wall = time.perf_counter() - start
        cpu1 = proc.cpu_times()
    finally:
        for conn in conns:
            conn.close()
    used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return summarize(
        latencies,
        statuses,
        wall,
        concurrency,
        client_cpu=used / wall if wall else 0.0,
        errors=errors,
    )


def _drive(
    conns: list[_Connection], request: Request, total: int, max_seconds: float | None = None
) -> tuple[list[float], list[int], list[str]]:
    """Every connection sends until `total` requests were taken from a shared counter (or
    `max_seconds` have passed)."""
    counter = itertools.count()
    deadline = time.perf_counter() + max_seconds if max_seconds is not None else float("inf")
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: list[int] = []
    errors: list[str] = []

    def worker(conn: _Connection) -> None:
        while True:
            with lock:
                if next(counter) >= total or time.perf_counter() >= deadline:
                    return
            started = time.perf_counter()
            status, error = conn.send(request)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses.append(status)
                if error:
                    errors.append(error)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in conns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, statuses, errors
