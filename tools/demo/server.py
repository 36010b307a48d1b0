"""The demo's HTTP server: the static page plus a token-adding proxy to TorchServe.

    python -m tools.demo [--host 127.0.0.1] [--port 8090] [--config config.properties]
                         [--key-file key_file.json] [--max-body BYTES]

Why a proxy at all: TorchServe wants `Authorization: Bearer <key>` on every call and the keys
sit in `key_file.json` next to the server. A page that held them could hand them to any script
on it; here the browser talks only to this process, which reads the keys itself (through
`tools.client.Client`, which also refreshes rotated or expired keys) and never puts them in an
answer. It passes only what the page needs (`tools.demo.routes.resolve`), refuses bodies over
the server's own request limit with 413 before reading them, requires JSON for POSTs (a
cross-site form cannot send that without a CORS preflight, which is never granted), checks the
Host header (DNS rebinding), and listens on loopback unless told otherwise.

Every answer is JSON `{"code", "type", "message"}` on error, so the page can always show the
problem in words. `Server-Timing: torchserve;dur=<ms>` tells the page how long TorchServe took.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from tools.client import DEFAULT_CONFIG, DEFAULT_KEY_FILE, Client, CvserveError
from tools.demo.catalog import build_catalog
from tools.demo.routes import Route, RouteError, resolve
from tools.tsconfig import read_keys, read_properties

log = logging.getLogger("tools.demo")

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090
#: TorchServe's own default `max_request_size`, used when the config does not set one.
TS_DEFAULT_MAX_REQUEST = 6_553_500
#: Bodies up to this many times the limit are read and dropped before the 413, so the browser
#: gets the answer instead of a reset connection; larger ones are cut off unread.
DRAIN_FACTOR = 2
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
TOKEN_ERROR = "InvalidKeyException"


class ProxyError(Exception):
    """An answer the proxy makes itself: HTTP status, error type and message in words."""

    def __init__(self, status: int, message: str, kind: str = "DemoProxyError") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


@dataclass(frozen=True)
class DemoSettings:
    """What the proxy needs to reach TorchServe, and its body limit in bytes."""

    config: Path = DEFAULT_CONFIG
    key_file: Path = DEFAULT_KEY_FILE
    max_body: int = TS_DEFAULT_MAX_REQUEST
    timeout: float = 120.0


def max_request_size(config: Path) -> int:
    """TorchServe's `max_request_size` from the config: the proxy refuses what it would."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        return int(read_properties(config).get("max_request_size", TS_DEFAULT_MAX_REQUEST))
    return TS_DEFAULT_MAX_REQUEST


def parse_image_request(raw: bytes) -> tuple[bytes, dict[str, Any]]:
    """The page's JSON body `{"image": "<base64 or data: URL>", ...options}` -> (bytes, options).

    The image is decoded here (not passed on as text) so a broken upload is a clear 400 from
    the proxy and the client library re-encodes it the way docs/api.md specifies.
    """
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProxyError(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("image"), str):
        raise ProxyError(400, 'send JSON {"image": "<base64 of the file>", ...options}')
    text = body.pop("image")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        image = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProxyError(400, f"the image is not valid base64: {exc}") from exc
    if not image:
        raise ProxyError(400, "the image is empty")
    return image, body


def call_torchserve(client: Client, route: Route, image: bytes, options: dict[str, Any]) -> Any:
    """Make the TorchServe call `route` stands for, with the client's tokens."""
    if route.kind == "predictions":
        return client.predict(image, route.name, route.version, **options)
    if route.kind == "explanations":
        return client.explain(image, route.name, route.version, **options)
    if route.kind == "wfpredict":
        if options:
            raise ProxyError(422, f"the pipeline takes no options, got {sorted(options)}")
        return client.pipeline(image, route.name)
    raise AssertionError(f"not an inference route: {route}")


def upstream_error(exc: Exception, settings: DemoSettings, inference_url: str) -> ProxyError:
    """A failed TorchServe call as an answer for the page, in words a user can act on."""
    if isinstance(exc, ProxyError):
        return exc
    if isinstance(exc, CvserveError):
        if exc.type == TOKEN_ERROR:
            return ProxyError(
                502,
                f"TorchServe refused the demo's key from {settings.key_file}: restart the "
                "demo with the --key-file of the running server",
                "BadGateway",
            )
        status = exc.status if 400 <= exc.status <= 599 else 502
        return ProxyError(status, exc.message or f"TorchServe answered {exc.status}", exc.type)
    if isinstance(exc, FileNotFoundError):  # the key file: no server started there
        return ProxyError(502, str(exc), "BadGateway")
    if isinstance(exc, requests.ConnectionError):
        return ProxyError(
            502,
            f"TorchServe is not reachable at {inference_url}: is it running? (make serve)",
            "BadGateway",
        )
    if isinstance(exc, requests.Timeout):
        return ProxyError(
            504, f"TorchServe did not answer within {settings.timeout:g} s", "GatewayTimeout"
        )
    raise exc


def redact(text: str, secrets: list[str]) -> str:
    """`text` with every secret replaced: a last guard so no error message carries a key."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


class DemoServer(ThreadingHTTPServer):
    """A threading HTTP server holding the settings and one TorchServe client per thread."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], settings: DemoSettings) -> None:
        super().__init__(address, DemoHandler)
        self.settings = settings
        self._local = threading.local()
        port = self.server_address[1]
        host = address[0]
        # Binding every interface was asked for on purpose: any Host is then expected.
        self.allowed_hosts: set[str] | None = (
            None
            if host in ("", "0.0.0.0", "::")
            else {f"{name}:{port}" for name in (*LOOPBACK_NAMES, host)}
        )

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def client(self) -> Client:
        """This thread's client (a requests.Session is not meant to be shared by threads)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = Client(
                self.settings.config, self.settings.key_file, timeout=self.settings.timeout
            )
            self._local.client = client
        return client

    def secrets(self) -> list[str]:
        try:
            return list(read_keys(self.settings.key_file).values())
        except (OSError, ValueError, KeyError, TypeError):
            return []


class DemoHandler(BaseHTTPRequestHandler):
    """Serves the page's files and its API calls; refuses everything else."""

    server: DemoServer
    server_version = "cvserve-demo"
    protocol_version = "HTTP/1.1"

    # ---- dispatch ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:  # no CORS: a preflight is refused like any other call
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            self._check_host()
            route = resolve(self.command, urlsplit(self.path).path)
            if route.kind == "static":
                self._send_static(route)
            elif route.kind == "models":
                self._send_catalog()
            else:
                self._proxy(route)
        except RouteError as exc:
            self._send_error(
                ProxyError(
                    exc.status, exc.message, "NotFound" if exc.status == 404 else "MethodNotAllowed"
                )
            )
        except ProxyError as exc:
            self._send_error(exc)

    def _check_host(self) -> None:
        allowed = self.server.allowed_hosts
        if allowed is not None and self.headers.get("Host", "") not in allowed:
            raise ProxyError(
                403, "unexpected Host header: open the demo at its loopback address", "Forbidden"
            )

    # ---- the three kinds of answers ---------------------------------------------------------

    def _send_static(self, route: Route) -> None:
        data = (STATIC_DIR / route.static_file).read_bytes()
        headers = {"Content-Type": route.content_type}
        if route.static_file.endswith(".html"):
            headers["Content-Security-Policy"] = PAGE_CSP
        self._send(200, data, headers)

    def _send_catalog(self) -> None:
        started = time.perf_counter()
        try:
            catalog = build_catalog(self.server.client())
        except (CvserveError, FileNotFoundError, requests.RequestException) as exc:
            raise upstream_error(exc, self.server.settings, self._inference_url()) from exc
        catalog["max_body"] = self.server.settings.max_body
        self._send_json(200, catalog, started)

    def _proxy(self, route: Route) -> None:
        raw = self._read_body()
        image, options = parse_image_request(raw)
        started = time.perf_counter()
        try:
            answer = call_torchserve(self.server.client(), route, image, options)
        except (CvserveError, FileNotFoundError, requests.RequestException) as exc:
            raise upstream_error(exc, self.server.settings, self._inference_url()) from exc
        self._send_json(200, answer, started)

    def _inference_url(self) -> str:
        with contextlib.suppress(Exception):
            return self.server.client().addresses.inference
        return "the configured address"

    def _read_body(self) -> bytes:
        """The request body, after the checks that need no reading: type and size."""
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ProxyError(
                415,
                'send the image as JSON {"image": "<base64>"} with Content-Type: application/json',
                "UnsupportedMediaType",
            )
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise ProxyError(
                411, "send a Content-Length (chunked bodies are not taken)", "LengthRequired"
            )
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            raise ProxyError(411, "a Content-Length header is required", "LengthRequired") from None
        limit = self.server.settings.max_body
        if length < 0 or length > limit:
            self._discard(length)
            raise ProxyError(
                413,
                f"the request is {length} bytes; the limit is {limit} bytes "
                f"(about {limit * 3 // 4 // 1024} KiB of image as base64)",
                "RequestEntityTooLarge",
            )
        return self.rfile.read(length)

    def _discard(self, length: int) -> None:
        """Read and drop a refused body if it is not huge, else cut the connection after."""
        self.close_connection = True
        if 0 < length <= DRAIN_FACTOR * self.server.settings.max_body:
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)

    # ---- writing ----------------------------------------------------------------------------

    def _send_json(self, status: int, body: Any, started: float | None = None) -> None:
        headers = {"Content-Type": "application/json"}
        if started is not None:
            elapsed_ms = (time.perf_counter() - started) * 1000
            headers["Server-Timing"] = f'torchserve;dur={elapsed_ms:.1f};desc="TorchServe call"'
        self._send(status, json.dumps(body).encode("utf-8"), headers)

    def _send_error(self, exc: ProxyError) -> None:
        message = redact(exc.message, self.server.secrets())
        log.info("%s %s -> %d %s", self.command, self.path, exc.status, message)
        self._send_json(exc.status, {"code": exc.status, "type": exc.kind, "message": message})

    def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def version_string(self) -> str:
        return self.server_version  # no Python version in the Server header

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def make_server(
    settings: DemoSettings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> DemoServer:
    """A bound (not yet serving) demo server; port 0 picks a free one."""
    return DemoServer((host, port), settings)


@contextlib.contextmanager
def running_demo(
    settings: DemoSettings, host: str = DEFAULT_HOST, port: int = 0
) -> Iterator[DemoServer]:
    """Serve in a background thread for the `with` block (tests); yields the DemoServer."""
    server = make_server(settings, host, port)
    thread = threading.Thread(target=server.serve_forever, name="cvserve-demo", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to listen on (default loopback only)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="TorchServe's config.properties (addresses, max_request_size)",
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        default=DEFAULT_KEY_FILE,
        help="key_file.json written where TorchServe was started",
    )
    parser.add_argument(
        "--max-body", type=int, help="largest request body in bytes (default: max_request_size)"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for TorchServe per call"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = DemoSettings(
        config=args.config,
        key_file=args.key_file,
        max_body=args.max_body or max_request_size(args.config),
        timeout=args.timeout,
    )
    if not args.key_file.is_file():
        log.warning(
            "%s not found: TorchServe does not seem to run there (make serve); the page "
            "will say so until it does",
            args.key_file,
        )
    server = make_server(settings, args.host, args.port)
    if server.allowed_hosts is None:
        log.warning(
            "listening on every interface (%s): anyone who can reach this port can run the models",
            args.host,
        )
    print(
        f"cvserve demo on {server.url} (TorchServe config {args.config}); Ctrl-C stops it",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
