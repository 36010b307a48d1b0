"""A token-aware Python client and CLI for cvserve's TorchServe (the HTTP contract in docs/api.md).

    python -m tools.client predict digit.png --model digit_classifier --topk 3
    python -m tools.client predict scene.png --model digit_segmenter --overlay --save-dir out/
    python -m tools.client explain digit.png --model digit_classifier --method gradcam
    python -m tools.client pipeline scene.png --save-dir out/
    python -m tools.client models | describe M [--version V|all] | register URL
    python -m tools.client set-default M V | unregister M [V] | scale M --min N [--max N]
    python -m tools.client metrics [--grep NAME] | ping
    python -m tools.client versions M | promote M V [--split test|--validation DIR]
    python -m tools.client rollback M | retire M V        (tools/versions_cli.py)

Addresses come from `config.properties`, tokens from `key_file.json` (both paths options). An
answer saying the token is invalid or expired makes the client re-read the key file (the
server may have rotated or restarted), else rotate the key with `GET /token?type=...` and the
API key, and retry once. Pipeline error objects (docs/api.md, Pipeline errors) are raised as
`CvserveError` with their status, like any HTTP error. PNG fields (`*_png`) can be saved as
files.

Failures a healthy server produces in normal operation are retried for inference calls only
(predictions, explanations, the pipeline, ping: they change nothing on the server, so sending
one twice is safe): 503 (queue full, or no worker yet), 507 (the worker died mid-request and is
being restarted), refused connections (the server is restarting) and connections reset or
closed before an answer, with exponential backoff and a bounded count (urllib3's `Retry`).
Management calls (register, scale, set-default, ...) are never retried: they are not all safe
to repeat. A read timeout is not retried either: a request that took that long would only
load a busy server again. Every call has a connect and a read timeout.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from handlers.contract import PIPELINE
from handlers.request import is_error_object
from tools.tsconfig import ServerAddresses, read_keys

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "config.properties"
DEFAULT_KEY_FILE = REPO_ROOT / "key_file.json"
DEFAULT_WORKFLOW = PIPELINE
TOKEN_ERROR = "InvalidKeyException"
CONNECT_TIMEOUT = 5.0
"""Seconds to open a connection: loopback or a LAN answers in milliseconds or not at all."""
DEFAULT_TIMEOUT = 120.0
"""Seconds to wait for an answer: an explanation of a large image on CPU takes seconds."""
DEFAULT_RETRIES = 4
DEFAULT_BACKOFF = 0.5
"""Retry backoff factor: waits of 0, 1, 2, 4 s (at most BACKOFF_MAX) between attempts."""
BACKOFF_MAX = 10.0
RETRY_STATUSES = frozenset({503, 507})

ImageInput = str | Path | bytes | bytearray | Any  # a path, encoded bytes, or a PIL image


class CvserveError(RuntimeError):
    """An error answer: `status` (HTTP, or the pipeline error object's), `type`, `message`."""

    def __init__(self, status: int, message: str, kind: str = "", body: Any = None) -> None:
        super().__init__(f"{status} {kind + ': ' if kind else ''}{message}")
        self.status = status
        self.message = message
        self.type = kind
        self.body = body


def image_bytes(image: ImageInput) -> bytes:
    """A file path, encoded bytes or a PIL image -> encoded file bytes (PIL images as PNG)."""
    if isinstance(image, bytes | bytearray):
        return bytes(image)
    if isinstance(image, str | Path):
        return Path(image).read_bytes()
    if hasattr(image, "save"):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    raise TypeError(f"expected a path, bytes or a PIL image, got {type(image).__name__}")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _is_token_error(resp: requests.Response) -> bool:
    if resp.status_code != 400:
        return False
    try:
        body = resp.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("type") == TOKEN_ERROR


def error_fields(body: Any) -> tuple[int, str, str] | None:
    """(status, type, message) of an error body, in either of the shapes servers send.

    cvserve's handlers and pipeline answer `{"error": {"status", "type", "message"}}` (docs/api.md,
    Pipeline errors); TorchServe's frontend answers `{"code", "type", "message"}`.
    """
    if is_error_object(body):
        err = body["error"]
        return int(err.get("status", 500)), str(err.get("type", "")), str(err.get("message", ""))
    if isinstance(body, dict) and "code" in body and "message" in body:
        return int(body["code"]), str(body.get("type", "")), str(body["message"])
    return None


def raise_for_answer(resp: requests.Response) -> Any:
    """The JSON body of a good answer; CvserveError for an HTTP error or a pipeline error.

    An error object that comes with HTTP 200 (a model's pass-through of an upstream error, or
    a pipeline on TorchServe without cvserve's frontend patch) is raised with the status it
    carries.
    """
    try:
        body = resp.json()
    except ValueError:
        body = resp.text
    fields = error_fields(body)
    if resp.status_code >= 400:
        if fields:
            status, kind, message = fields
            raise CvserveError(resp.status_code, message, kind, body)
        raise CvserveError(resp.status_code, str(body).strip() or resp.reason, body=body)
    if fields and isinstance(body, dict) and "error" in body:
        status, kind, message = fields
        raise CvserveError(status, message, kind, body)
    return body


class InferenceRetry(Retry):
    """urllib3's Retry, except that a read timeout is raised at once instead of retried:
    urllib3 counts timeouts and resets as the same "read" errors."""

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> Retry:
        if isinstance(error, ReadTimeoutError):
            raise error
        return super().increment(method, url, response, error, _pool, _stacktrace)


def inference_retry(retries: int, backoff: float = DEFAULT_BACKOFF) -> Retry:
    """The retry policy of inference calls: `retries` more attempts after the first on 503,
    507, refused or reset connections, with waits of 0, 2, 4, ... x `backoff` seconds."""
    return InferenceRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        redirect=0,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "POST"}),
        backoff_factor=backoff,
        backoff_max=BACKOFF_MAX,
        raise_on_status=False,  # the last 503/507 comes back as a response: CvserveError
        respect_retry_after_header=True,
    )


def _session(retry: Retry | int) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class Client:
    """cvserve's HTTP API: inference, explanations, the pipeline, versions, workers, metrics.

    Args:
        config: `config.properties` to read the three addresses from.
        key_file: TorchServe's `key_file.json` (written where the server was started).
        addresses: explicit addresses instead of the config file.
        timeout: seconds to wait for each answer (connecting has its own CONNECT_TIMEOUT).
        retries: extra attempts of an inference call after a 503, a 507 or a refused or
            reset connection (0: none); management calls are never retried.
        backoff: the backoff factor between those attempts (waits 0, 2, 4, ... x backoff s).
    """

    def __init__(
        self,
        config: str | Path = DEFAULT_CONFIG,
        key_file: str | Path = DEFAULT_KEY_FILE,
        *,
        addresses: ServerAddresses | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
    ) -> None:
        if retries < 0 or backoff < 0:
            raise ValueError(f"retries and backoff must be >= 0, got {retries} and {backoff}")
        self.addresses = addresses or ServerAddresses.from_config(config)
        self.key_file = Path(key_file)
        self.timeout = (CONNECT_TIMEOUT, timeout)
        self.session = _session(0)  # management and metrics: never retried
        self.inference_session = _session(inference_retry(retries, backoff))
        self._keys: dict[str, str] | None = None

    # ---- tokens -----------------------------------------------------------------------------

    def _key(self, kind: str) -> str:
        if self._keys is None:
            self._keys = read_keys(self.key_file)
        return self._keys[kind]

    def refresh_key(self, kind: str) -> None:
        """A fresh `kind` key: re-read the key file; if unchanged, rotate it on the server."""
        before = self._keys.get(kind) if self._keys else None
        self._keys = read_keys(self.key_file)
        if self._keys.get(kind) != before:
            return
        resp = self.session.get(
            f"{self.addresses.management}/token",
            params={"type": kind},
            headers={"Authorization": f"Bearer {self._keys['API']}"},
            timeout=self.timeout,
        )
        raise_for_answer(resp)
        self._keys = read_keys(self.key_file)  # TorchServe writes the new key there

    def _call(self, method: str, api: str, path: str, **kwargs: Any) -> requests.Response:
        """One authorised call; on an invalid/expired-token answer refresh and retry once.

        Inference calls also retry 503, 507 and refused or reset connections (`retries`)."""
        kind = "management" if api == "management" else "inference"
        session = self.session if api == "management" else self.inference_session
        url = getattr(self.addresses, api) + path
        extra_headers = kwargs.pop("headers", {})
        for attempt in (0, 1):
            headers = {**extra_headers, "Authorization": f"Bearer {self._key(kind)}"}
            resp = session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
            if attempt == 0 and _is_token_error(resp):
                self.refresh_key(kind)
                continue
            break
        return resp

    # ---- inference --------------------------------------------------------------------------

    @staticmethod
    def _route(prefix: str, model: str, version: str | None) -> str:
        return f"/{prefix}/{model}" + (f"/{version}" if version else "")

    def _post_image(self, path: str, image: ImageInput, options: Mapping[str, Any]) -> Any:
        data = image_bytes(image)
        options = {k: v for k, v in options.items() if v is not None}
        if options:  # JSON keeps the options' types (ints, booleans)
            resp = self._call("POST", "inference", path, json={"image": b64(data), **options})
        else:  # the file itself as the body, as `curl -T` sends it
            resp = self._call(
                "POST", "inference", path, data=data,
                headers={"Content-Type": "application/octet-stream"},
            )  # fmt: skip
        return raise_for_answer(resp)

    def predict(
        self, image: ImageInput, model: str, version: str | None = None, **options: Any
    ) -> dict[str, Any]:
        """`POST /predictions/{model}[/{version}]` (classifier: topk; segmenter: overlay,
        min_area)."""
        return self._post_image(self._route("predictions", model, version), image, options)

    def predict_many(
        self, images: Iterable[ImageInput], model: str, version: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:  # fmt: skip
        """Several images in one request (`{"images": [...]}`): `{"predictions": [...]}`."""
        body = {"images": [b64(image_bytes(i)) for i in images], **options}
        resp = self._call(
            "POST", "inference", self._route("predictions", model, version), json=body
        )
        return raise_for_answer(resp)

    def explain(
        self, image: ImageInput, model: str, version: str | None = None, **options: Any
    ) -> dict[str, Any]:
        """`POST /explanations/{model}[/{version}]` (method, target, n_steps)."""
        return self._post_image(self._route("explanations", model, version), image, options)

    def pipeline(self, image: ImageInput, workflow: str = DEFAULT_WORKFLOW) -> dict[str, Any]:
        """`POST /wfpredict/{workflow}`; a pipeline error object raises CvserveError."""
        return self._post_image(f"/wfpredict/{workflow}", image, {})

    def ping(self) -> dict[str, Any]:
        return raise_for_answer(self._call("GET", "inference", "/ping"))

    # ---- management -------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """Registered models (`GET /models`)."""
        body = raise_for_answer(self._call("GET", "management", "/models", params={"limit": 1000}))
        return body.get("models", [])

    def describe(
        self, model: str, version: str | None = None, customized: bool = False
    ) -> list[dict[str, Any]]:
        """`GET /models/{model}[/{version}|/all]`; customized adds the handler's model card."""
        params = {"customized": "true"} if customized else None
        resp = self._call("GET", "management", self._route("models", model, version), params=params)
        return raise_for_answer(resp)

    def register(
        self, url: str, *, initial_workers: int = 1, synchronous: bool = True, **params: Any
    ) -> dict[str, Any]:
        """`POST /models?url=<file in the model store>` (e.g. digit_classifier-2.0.mar)."""
        query = {
            "url": url,
            "initial_workers": initial_workers,
            "synchronous": str(synchronous).lower(),
            **params,
        }
        return raise_for_answer(self._call("POST", "management", "/models", params=query))

    def set_default(self, model: str, version: str) -> dict[str, Any]:
        """`PUT /models/{model}/{version}/set-default` (promote or roll back)."""
        path = f"/models/{model}/{version}/set-default"
        return raise_for_answer(self._call("PUT", "management", path))

    def unregister(self, model: str, version: str | None = None) -> dict[str, Any]:
        """`DELETE /models/{model}[/{version}]`."""
        path = self._route("models", model, version)
        return raise_for_answer(self._call("DELETE", "management", path))

    def scale(
        self,
        model: str,
        min_worker: int,
        max_worker: int | None = None,
        version: str | None = None,
        synchronous: bool = True,
    ) -> dict[str, Any]:
        """`PUT /models/{model}[/{version}]?min_worker=N[&max_worker=M]`."""
        params: dict[str, Any] = {"min_worker": min_worker, "synchronous": str(synchronous).lower()}
        if max_worker is not None:
            params["max_worker"] = max_worker
        path = self._route("models", model, version)
        return raise_for_answer(self._call("PUT", "management", path, params=params))

    def register_workflow(self, url: str) -> dict[str, Any]:
        """`POST /workflows?url=<name>.war`."""
        resp = self._call("POST", "management", "/workflows", params={"url": url})
        return raise_for_answer(resp)

    def unregister_workflow(self, name: str) -> dict[str, Any]:
        """`DELETE /workflows/{name}` (its function nodes go with it; `model:` nodes stay)."""
        return raise_for_answer(self._call("DELETE", "management", f"/workflows/{name}"))

    def workflows(self) -> list[dict[str, Any]]:
        return raise_for_answer(self._call("GET", "management", "/workflows")).get("workflows", [])

    # ---- metrics ----------------------------------------------------------------------------

    def metrics(self, names: Sequence[str] | None = None) -> str:
        """Prometheus text from the metrics address (no token needed there)."""
        params = [("name[]", n) for n in names] if names else None
        resp = self.session.get(
            f"{self.addresses.metrics}/metrics", params=params, timeout=self.timeout
        )
        if resp.status_code >= 400:
            raise_for_answer(resp)
        return resp.text
