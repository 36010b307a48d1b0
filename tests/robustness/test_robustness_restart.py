"""A second, private server (tools.sandbox): a full job queue, then a restart.

The server runs the shipped config.properties with one change, `job_queue_size=1`, so a burst
of slow requests (integrated gradients, 64 steps) overflows the queue at once:
TorchServe must answer the overflow with a quick 503 and serve again right after. Then the
same server is stopped and started again (tools.serve.stop/start, what `make stop` and `make
serve` run): both models and the workflow come back, answer as before, and a client made
before the restart follows the new keys by itself.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from corpus import b64, digit_image, encode
from robust_support import dumps, error_fields, json_or_text, management_auth, png

from tools.sandbox import Sandbox, sandbox_config, sandbox_server
from tools.serve import DEFAULT_WORKFLOWS, REPO_ROOT, ping, start, stop

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUEUE = 1
BURST = 32
CLIENT_TIMEOUT = 60


@pytest.fixture(scope="module")
def queue_server(tmp_path_factory: pytest.TempPathFactory, model_store: Path) -> Iterator[Sandbox]:
    if shutil.which("java") is None:
        pytest.skip("Java 17+ is needed for TorchServe")
    root = tmp_path_factory.mktemp("queue_server")
    config = sandbox_config(
        REPO_ROOT / "config.properties",
        root / "queue.properties",
        model_store,
        overrides={"job_queue_size": str(QUEUE)},
    )
    with sandbox_server(model_store, root / "ts", config=config, timeout=300) as box:
        yield box


def explain(session: requests.Session, box: Sandbox, data: bytes) -> tuple[int, Any, float]:
    started = time.perf_counter()
    try:
        resp = session.post(
            box.addresses.inference + "/explanations/digit_classifier",
            json={"image": b64(data), "n_steps": 64},
            headers=management_auth(box, "inference"),
            timeout=CLIENT_TIMEOUT,
        )
        status, body = resp.status_code, json_or_text(resp)
    except requests.RequestException as exc:
        status, body = -1, repr(exc)
    return status, body, time.perf_counter() - started


def test_full_queue_answers_503_quickly_and_recovers(queue_server: Sandbox) -> None:
    from concurrent.futures import ThreadPoolExecutor

    data = encode(digit_image(28), "PNG")
    with ThreadPoolExecutor(max_workers=BURST) as pool:
        started = time.perf_counter()
        results = list(
            pool.map(lambda _: explain(requests.Session(), queue_server, data), range(BURST))
        )
        wall = time.perf_counter() - started
    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {200, 503}, [
        (s, dumps(b)) for s, b, _ in results if s not in (200, 503)
    ]
    rejected = [(body, seconds) for status, body, seconds in results if status == 503]
    assert rejected, f"no 503 from a queue of {QUEUE} under a burst of {BURST}"
    assert 200 in statuses
    for body, seconds in rejected:
        assert error_fields(body) is not None and error_fields(body)[0] == 503, dumps(body)
        assert seconds < 5, f"a 503 took {seconds:.1f} s"
    # recovered: one at a time, everything is answered
    session = requests.Session()
    after = [explain(session, queue_server, data)[0] for _ in range(5)]
    assert after == [200] * 5
    print(
        f"\nqueue {QUEUE}: burst of {BURST} in {wall:.1f} s: {statuses.count(200)} x 200, "
        f"{len(rejected)} x 503 (slowest 503 {max(s for _, s in rejected) * 1000:.0f} ms); "
        f"message: {error_fields(rejected[0][0])[1]!r}"
    )


def snapshot(box: Sandbox, client: Any, scene: bytes) -> dict[str, Any]:
    """What must survive a restart: the models, the workflow, and their answers."""
    auth = management_auth(box)
    models = requests.get(box.addresses.management + "/models", headers=auth, timeout=30)
    workflows = requests.get(box.addresses.management + "/workflows", headers=auth, timeout=30)
    digit = encode(digit_image(28), "PNG")
    return {
        "models": sorted(m["modelName"] for m in models.json()["models"]),
        "workflows": sorted(w["workflowName"] for w in workflows.json()["workflows"]),
        "classifier": client.predict(digit, "digit_classifier"),
        "segmenter": client.predict(scene, "digit_segmenter"),
        "pipeline": client.pipeline(scene),
    }


def test_restart_brings_back_models_and_workflow(queue_server: Sandbox, tiny_models) -> None:
    scene = png(tiny_models.scene_with_digits(seed=0, index=1)[0])
    client = queue_server.client(timeout=CLIENT_TIMEOUT)
    before = snapshot(queue_server, client, scene)
    assert {"digit_classifier", "digit_segmenter"} <= set(before["models"])
    assert before["workflows"] == ["digit_pipeline"]

    started = time.perf_counter()
    assert stop(queue_server.spec)
    assert not ping(queue_server.spec)
    stopped = time.perf_counter()
    start(queue_server.spec, timeout=300, workflows=DEFAULT_WORKFLOWS)
    restarted = time.perf_counter()

    after = snapshot(queue_server, client, scene)  # the old client: keys changed on restart
    assert after == before
    print(
        f"\nrestart: stop {stopped - started:.1f} s, start {restarted - stopped:.1f} s; "
        f"back: {after['models']} and {after['workflows']}"
    )
