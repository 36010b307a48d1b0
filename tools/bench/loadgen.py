"""A closed-loop HTTP load generator with persistent connections.

`concurrency` threads each hold ONE keep-alive `http.client` connection and send requests back
to back for a fixed time (or until a fixed total has been sent), so every server sees the
same number of connections (no per-request TCP handshakes measured as server cost) for as
long as the others. A level is timed rather than counted because a count that suits a fast
server is a fraction of a second on a slow one (32 requests at 32 concurrent is one request
per connection: its p99 is the maximum). A few response bodies are kept for the answer check.
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

    def send(self, request: Request) -> tuple[int, str, bytes]:
        """Send once; (status, error text or "", body) after reading the whole response."""
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
                return resp.status, error, data
            except (OSError, http.client.HTTPException) as exc:
                # A server may drop an idle keep-alive connection: retry once on a fresh one.
                self.close()
                if attempt == 1:
                    return 0, f"{type(exc).__name__}: {exc}", b""
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run_level(
    request: Request,
    concurrency: int,
    total: int | None = None,
    *,
    duration: float | None = None,
    warmup: int | None = None,
    timeout: float = 300,
    sample: int = 0,
) -> LevelResult:
    """Send requests with `concurrency` connections in flight for `duration` seconds (no new
    request starts after it; the ones in flight finish, so the level measures at least that
    long) and/or until `total` were sent; summarise them. Throughput is successful requests
    over the wall time.

    `warmup` requests (default: 2 per connection) go first on the same connections and are
    not counted, so lazy initialisation (first batch, JIT, worker start) is not measured.
    `sample` successful response bodies are kept (`LevelResult.samples`), one per connection
    spread over the connections, for the answer check.
    """
    if concurrency < 1 or (total is not None and total < 1):
        raise ValueError("concurrency and total must be >= 1")
    if total is None and duration is None:
        raise ValueError("a level needs a duration or a total")
    warmup = 2 * concurrency if warmup is None else warmup
    conns = [_Connection(request.url, timeout) for _ in range(concurrency)]
    try:
        if warmup:
            _drive(conns, request, warmup, None)
        proc = psutil.Process()
        cpu0 = proc.cpu_times()
        start = time.perf_counter()
        latencies, statuses, errors, samples = _drive(conns, request, total, duration, sample)
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
        samples=samples,
    )


def _drive(
    conns: list[_Connection],
    request: Request,
    total: int | None,
    duration: float | None,
    sample: int = 0,
) -> tuple[list[float], list[int], list[str], list[bytes]]:
    """Every connection sends until `total` requests were taken from a shared counter or
    `duration` seconds have passed, whichever comes first."""
    counter = itertools.count()
    limit = total if total is not None else float("inf")
    deadline = time.perf_counter() + duration if duration is not None else float("inf")
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: list[int] = []
    errors: list[str] = []
    samples: list[bytes] = []

    per_connection = -(-sample // len(conns))  # spread the sample over the connections

    def worker(conn: _Connection) -> None:
        kept = 0
        while True:
            with lock:
                if next(counter) >= limit or time.perf_counter() >= deadline:
                    return
            started = time.perf_counter()
            status, error, body = conn.send(request)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses.append(status)
                if error:
                    errors.append(error)
                elif kept < per_connection and len(samples) < sample:
                    samples.append(body)
                    kept += 1

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in conns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, statuses, errors, samples
