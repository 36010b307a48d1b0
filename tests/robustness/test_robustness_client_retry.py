"""tools.client survives the server's normal failures (docs/api.md, Errors): a private server
(tools.sandbox) whose classifier loses its workers (503), and that is stopped and started
again while a client waits (refused connections, then new keys).

Retries are seen through urllib3's own log ("Incremented Retry"), not counted by a mock.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from corpus import digit_image, encode
from urllib3.exceptions import ReadTimeoutError

from tools.client import Client, CvserveError, inference_retry
from tools.sandbox import Sandbox, sandbox_server
from tools.serve import start, stop

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DIGIT = encode(digit_image(28), "PNG")
RETRY_LOG = "urllib3"  # urllib3.util.retry: "Incremented Retry"; connectionpool: "Retrying"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, model_store: Path) -> Iterator[Sandbox]:
    if shutil.which("java") is None:
        pytest.skip("Java 17+ is needed for TorchServe")
    root = tmp_path_factory.mktemp("retry_server")
    with sandbox_server(model_store, root / "ts", timeout=300, workflows=()) as server:
        yield server


def client(box: Sandbox, retries: int, backoff: float = 0.5) -> Client:
    return Client(box.spec.config, box.spec.key_file, timeout=60, retries=retries, backoff=backoff)


def retries_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith(RETRY_LOG)]


def later(seconds: float, action, *args, **kwargs) -> threading.Thread:
    """Run `action` in a thread after `seconds` (the server changes while a client waits)."""

    def run() -> None:
        time.sleep(seconds)
        action(*args, **kwargs)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_the_policy_retries_only_what_a_healthy_server_produces() -> None:
    policy = inference_retry(3)
    for status in (503, 507):
        assert policy.is_retry("POST", status)
    for status in (400, 404, 413, 422, 500):
        assert not policy.is_retry("POST", status)
    assert not policy.is_retry("PUT", 503)  # management verbs are not in the allow-list
    with pytest.raises(ReadTimeoutError):  # a slow answer is not sent again
        policy.increment("POST", "/predictions/x", error=ReadTimeoutError(None, "/", "slow"))
    with pytest.raises(ValueError, match="retries"):
        Client(addresses=None, retries=-1)


def test_a_503_is_retried_until_a_worker_is_back(box: Sandbox, caplog) -> None:
    plain, patient = client(box, retries=0), client(box, retries=8)
    plain.scale("digit_classifier", 0, 0)
    try:
        with pytest.raises(CvserveError) as refused:
            plain.predict(DIGIT, "digit_classifier")
        assert refused.value.status == 503, refused.value
        caplog.set_level(logging.DEBUG, logger=RETRY_LOG)
        scaler = later(1.0, plain.scale, "digit_classifier", 1, 1)
        answer = patient.predict(DIGIT, "digit_classifier")
        scaler.join(timeout=120)
    finally:
        plain.scale("digit_classifier", 1, 1)
    assert answer["label"] in [str(i) for i in range(10)]
    logged = retries_logged(caplog)
    assert any("Incremented Retry" in line for line in logged), logged  # retried after the 503
    assert any('/predictions/digit_classifier HTTP/1.1" 503' in line for line in logged), logged


def test_a_restart_is_bridged_by_retries(box: Sandbox, caplog) -> None:
    plain, patient = client(box, retries=0), client(box, retries=12, backoff=1.0)
    before = patient.predict(DIGIT, "digit_classifier")  # keys cached: they change on restart
    plain.ping()
    assert stop(box.spec)
    with pytest.raises(requests.ConnectionError):
        plain.predict(DIGIT, "digit_classifier")
    caplog.set_level(logging.DEBUG, logger=RETRY_LOG)
    starter = later(1.0, start, box.spec, timeout=300, workflows=())
    after = patient.predict(DIGIT, "digit_classifier")
    starter.join(timeout=300)
    assert after == before
    logged = retries_logged(caplog)
    assert any("Retrying" in line and "NewConnectionError" in line for line in logged), logged
