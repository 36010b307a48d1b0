"""The workflow engine with cvserve's frontend patch, through real TorchServes (issue 14).

On the session server: no lost answers under load (counted in the log, not timed), one copy
of each model, promote and rollback reaching the pipeline under traffic, and a used model
that cannot be unregistered. On a server of its own, started WITHOUT tools.serve registering
the workflow: `load_workflows` registers it at start, and a burst beyond the workflow's
capacity is answered 503 at once instead of hanging.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from model_src import load_checkpoint, save_checkpoint
from tools import frontend_patch
from tools.archive import archive_checkpoint

pytestmark = pytest.mark.integration

WORKFLOW = "digit_pipeline"
REQUESTS, CONCURRENCY = 2000, 32
#: Log lines that mean a node's answer was late or lost (the 0.12.0 race) or retried.
STALL_LINES = re.compile(r"Timed out while executing|Retrying workflow node|did not answer")
CANDIDATE = "2.5"  # a version no other test module uses


@pytest.fixture(scope="module", autouse=True)
def patched() -> None:
    if not frontend_patch.is_patched():
        pytest.skip(f"TorchServe frontend is {frontend_patch.describe()}")


def _wf_url(server: object) -> str:
    return f"{server.addresses.inference}/wfpredict/{WORKFLOW}"


def _stall_lines(server: object) -> list[str]:
    log = Path(server.spec.workdir) / "logs" / "ts_log.log"
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    return [line for line in text.splitlines() if STALL_LINES.search(line)]


def _post_many(
    url: str, headers: dict[str, str], body: bytes, count: int, threads: int
) -> list[tuple[int, dict]]:
    """`count` posts of `body` over `threads` keep-alive connections: (status, JSON body)."""
    local = threading.local()

    def one(_: int) -> tuple[int, dict]:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        resp = session.post(url, data=body, headers=headers, timeout=120)
        return resp.status_code, resp.json()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, range(count)))


def test_every_answer_arrives_once_at_concurrency_32(ts_server, auth_header, scene) -> None:
    before = len(_stall_lines(ts_server))
    headers = {**auth_header("inference"), "Content-Type": "image/png"}
    answers = _post_many(_wf_url(ts_server), headers, scene[0], REQUESTS, CONCURRENCY)
    statuses = Counter(status for status, _ in answers)
    assert statuses == {200: REQUESTS}, statuses
    first = answers[0][1]
    assert all(body == first for _, body in answers)  # the same scene, the same answer
    new_lines = _stall_lines(ts_server)[before:]
    assert new_lines == [], new_lines[:5]


def test_each_model_is_in_memory_once(ts_server, auth_header) -> None:
    """The model nodes call the registered models: no `<workflow>__<model>` copies exist;
    only the function nodes are models of the workflow's own (the listing hides those)."""
    mgmt, headers = ts_server.addresses.management, auth_header("management")

    def described(name: str) -> int:
        return requests.get(f"{mgmt}/models/{name}", headers=headers, timeout=30).status_code

    assert described("digit_classifier") == described("digit_segmenter") == 200
    assert described(f"{WORKFLOW}__segmenter") == described(f"{WORKFLOW}__classifier") == 404
    for node in ("prepare", "cut", "aggregate"):
        assert described(f"{WORKFLOW}__{node}") == 200


@pytest.fixture(scope="module")
def candidate(checkpoint_root: Path, model_store: Path) -> str:
    """digit_classifier-2.5.mar: the 1.0 weights under another version."""
    model, card = load_checkpoint(checkpoint_root / "digit_classifier" / "1.0" / "model.pt")
    path = model_store.parent / "candidate" / CANDIDATE / "model.pt"
    save_checkpoint(path, model, replace(card, version=CANDIDATE))
    archive_checkpoint(path, model_store, min_workers=1, max_workers=1)
    return f"digit_classifier-{CANDIDATE}.mar"


@pytest.fixture
def registered_candidate(ts_client, candidate: str) -> Iterator[str]:
    ts_client.register(candidate)
    yield CANDIDATE
    ts_client.set_default("digit_classifier", "1.0")
    ts_client.unregister("digit_classifier", CANDIDATE)


class PipelineTraffic:
    """Threads posting a scene to the pipeline until stopped; counts outcome and version."""

    def __init__(self, url: str, headers: dict[str, str], body: bytes, threads: int = 3):
        self.url, self.headers, self.body = url, headers, body
        self.outcomes: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            try:
                resp = session.post(self.url, data=self.body, headers=self.headers, timeout=60)
                body = resp.json()
                outcome = (
                    f"200 {body['models']['classifier']['version']}"
                    if resp.status_code == 200
                    else f"{resp.status_code} {body}"
                )
            except (requests.RequestException, ValueError, KeyError) as exc:
                outcome = f"failed {type(exc).__name__}"
            with self.lock:
                self.outcomes[outcome] += 1

    def count(self, outcome: str) -> int:
        with self.lock:
            return self.outcomes[outcome]

    def wait_for(self, outcome: str, more: int, timeout: float = 120) -> None:
        target = self.count(outcome) + more
        deadline = time.monotonic() + timeout
        while self.count(outcome) < target and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.count(outcome) >= target, (outcome, dict(self.outcomes))

    def __enter__(self) -> PipelineTraffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def test_promote_and_rollback_move_the_pipeline(
    ts_server, ts_client, auth_header, scene, registered_candidate
) -> None:
    headers = {**auth_header("inference"), "Content-Type": "image/png"}
    with PipelineTraffic(_wf_url(ts_server), headers, scene[0]) as traffic:
        traffic.wait_for("200 1.0", 10)
        ts_client.set_default("digit_classifier", CANDIDATE)
        traffic.wait_for(f"200 {CANDIDATE}", 20)
        assert ts_client.pipeline(scene[0])["models"]["classifier"]["version"] == CANDIDATE
        ts_client.set_default("digit_classifier", "1.0")
        traffic.wait_for("200 1.0", 20)
        assert ts_client.pipeline(scene[0])["models"]["classifier"]["version"] == "1.0"
    outcomes = dict(traffic.outcomes)
    assert set(outcomes) == {"200 1.0", f"200 {CANDIDATE}"}, outcomes  # no failed request


def test_a_model_the_pipeline_uses_cannot_be_unregistered(
    ts_server, ts_client, auth_header, registered_candidate
) -> None:
    mgmt = ts_server.addresses.management
    for path in ("/models/digit_classifier", "/models/digit_classifier/1.0"):
        resp = requests.delete(f"{mgmt}{path}", headers=auth_header("management"), timeout=60)
        assert resp.status_code == 409, resp.text
        assert WORKFLOW in resp.json()["message"], resp.text
    # A version the pipeline does not call can go (the fixture's cleanup does it too).
    assert ts_client.unregister("digit_classifier", CANDIDATE)
    ts_client.register(f"digit_classifier-{CANDIDATE}.mar")
    assert {m["modelName"] for m in ts_client.models()} >= {"digit_classifier"}


# ---------------------------------------------------------------------------------------------
# A server of its own: the workflow comes from load_workflows, capacity 1 + 1 queued.


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory, model_store: Path) -> Iterator[object]:
    from tools.sandbox import sandbox_server

    overrides = {"workflow_max_concurrency": "1", "workflow_queue_size": "1"}
    workdir = tmp_path_factory.mktemp("ts-small")
    with sandbox_server(model_store, workdir, workflows=(), overrides=overrides) as box:
        yield box


def test_load_workflows_registers_the_pipeline_at_start(small_server, scene) -> None:
    client = small_server.client()
    assert [w["workflowName"] for w in client.workflows()] == [WORKFLOW]
    assert client.pipeline(scene[0])["models"]["classifier"]["version"] == "1.0"


def test_a_burst_beyond_capacity_gets_503_at_once(small_server, scene) -> None:
    keys = small_server.client()
    headers = {"Authorization": f"Bearer {keys._key('inference')}", "Content-Type": "image/png"}
    answers = _post_many(_wf_url(small_server), headers, scene[0], 24, 24)
    statuses = Counter(status for status, _ in answers)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] >= 1 and statuses[503] >= 1, statuses
    busy = next(body for status, body in answers if status == 503)
    assert "busy" in busy["message"], busy
    # Nothing is stuck: the next request is answered.
    assert small_server.client().pipeline(scene[0])["labels"] is not None
