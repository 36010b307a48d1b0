"""tools.bench.loadgen against a tiny local HTTP server: counts, statuses, keep-alive.

No timing assertions: only what was sent and received is checked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from tools.bench.loadgen import Request, run_level


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    connections: ClassVar[set[tuple[str, int]]] = set()
    bodies: ClassVar[list[bytes]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            self.connections.add(self.client_address)
            self.bodies.append(body)
        status = 503 if self.path == "/busy" else 200
        reply = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    _Handler.connections = set()
    _Handler.bodies = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_sends_exactly_total_plus_warmup_on_persistent_connections(server: str) -> None:
    request = Request(server + "/predict", b'{"image": "x"}', {"Content-Type": "application/json"})
    result = run_level(request, concurrency=4, total=40, warmup=8)
    assert result.requests == 40 and result.ok == 40
    assert result.statuses == {"200": 40}
    assert len(_Handler.bodies) == 48
    assert set(_Handler.bodies) == {b'{"image": "x"}'}
    # one connection per concurrent client, reused for every request
    assert len(_Handler.connections) == 4
    assert result.rps > 0 and result.p50_ms <= result.p95_ms <= result.p99_ms
    assert result.client_cpu >= 0


def test_non_200_answers_are_counted_as_failures(server: str) -> None:
    result = run_level(Request(server + "/busy", b"{}", {}), concurrency=2, total=6, warmup=0)
    assert result.ok == 0 and result.statuses == {"503": 6}
    assert result.errors and result.errors[0].startswith("503")


def test_unreachable_server_is_reported_not_raised() -> None:
    from tools.sandbox import free_ports

    port = free_ports(1)[0]
    result = run_level(Request(f"http://127.0.0.1:{port}/x", b"{}", {}), 1, 2, warmup=0)
    assert result.ok == 0 and result.statuses == {"0": 2}


def test_duration_stops_starting_requests(server: str) -> None:
    # a deadline already passed: no request starts, and the empty level still summarises
    result = run_level(Request(server + "/p", b"{}", {}), 2, warmup=0, duration=0.0)
    assert result.requests == 0 and result.ok == 0


def test_timed_level_runs_at_least_its_duration_and_keeps_samples(server: str) -> None:
    result = run_level(Request(server + "/p", b"{}", {}), 3, warmup=0, duration=0.2, sample=4)
    assert result.wall_s >= 0.2 and result.ok == result.requests > 0
    assert len(result.samples) == 4 and set(result.samples) == {b'{"ok": true}'}
    assert "samples" not in result.to_dict()


def test_failed_answers_are_not_sampled(server: str) -> None:
    result = run_level(Request(server + "/busy", b"{}", {}), 1, 3, warmup=0, sample=2)
    assert result.samples == []


def test_rejects_bad_arguments(server: str) -> None:
    with pytest.raises(ValueError):
        run_level(Request(server, b"", {}), concurrency=0, total=1)
    with pytest.raises(ValueError):
        run_level(Request(server, b"", {}), concurrency=1)  # neither total nor duration
