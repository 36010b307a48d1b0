"""The bad-input corpus (corpus.py) against the session server: statuses, messages, no crash.

Every case goes to both models' predictions, the classifier's explanations and the workflow.
Direct model calls answer with the HTTP status docs/api.md promises and a message naming the
problem; so does the workflow, with the models' own status and `{"error": {"status", "type",
"message"}}` (docs/api.md, Pipeline errors). Afterwards every worker still has the PID it had
before the corpus (a crashed worker is restarted with a new PID) and good requests succeed.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import requests
from corpus import TARGETS, Case, build_corpus, digit_image, encode, success_shape
from robust_support import dumps, error_fields, json_or_text

from tools.serve import REPO_ROOT
from tools.tsconfig import read_properties

pytestmark = pytest.mark.integration

ROUTES = {
    "cls": "/predictions/digit_classifier",
    "seg": "/predictions/digit_segmenter",
    "exp": "/explanations/digit_classifier",
    "wf": "/wfpredict/digit_pipeline",
}
CORPUS = build_corpus(int(read_properties(REPO_ROOT / "config.properties")["max_request_size"]))
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def pids_before(ts_server: Any, request: pytest.FixtureRequest) -> dict[str, list]:
    """Worker PIDs of every model (workflow nodes included) before the first case."""
    snapshot = request.getfixturevalue("worker_pids")
    return snapshot()


def send(ts_server: Any, auth: dict[str, str], case: Case, target: str) -> requests.Response:
    kwargs = case.request_kwargs()
    kwargs["headers"] = {**kwargs.get("headers", {}), **auth}
    url = ts_server.addresses.inference + ROUTES[target]
    return requests.post(url, timeout=60, **kwargs)


def check(case: Case, target: str, resp: requests.Response) -> None:
    """The answer docs/api.md promises for `case` on `target`."""
    want = case.expected(target)
    body = json_or_text(resp)
    where = f"{case.name} on {target}: HTTP {resp.status_code} {dumps(body)}"
    if want.status == 200:
        assert resp.status_code == 200, where
        assert success_shape(target, body), where
        return
    # The pipeline answers with the models' status (cvserve's frontend patch), like the models.
    assert resp.status_code == want.status, where
    fields = error_fields(body)
    if case.frontend and fields is None:
        return  # the frontend's own answer (e.g. Netty's 413) may carry no JSON body
    assert fields is not None, where
    status, message = fields
    assert status == want.status, where
    if want.words:
        assert re.search(want.words, message, re.IGNORECASE), where


def corpus_params() -> list[Any]:
    """(case, target) pairs; known bugs run as strict xfails."""
    params = []
    for case in CORPUS:
        for target in TARGETS:
            marks = []
            if target in case.known_bugs:
                marks = [pytest.mark.xfail(strict=True, reason=case.known_bugs[target])]
            params.append(pytest.param(case, target, id=f"{case.name}-{target}", marks=marks))
    return params


@pytest.mark.parametrize(("case", "target"), corpus_params())
def test_corpus(ts_server, auth_header, pids_before, case: Case, target: str) -> None:
    started = time.perf_counter()
    resp = send(ts_server, auth_header("inference"), case, target)
    TIMINGS[f"{case.name}/{target}"] = time.perf_counter() - started
    check(case, target, resp)


def test_segmenter_has_no_explanations(ts_server, auth_header) -> None:
    resp = requests.post(
        ts_server.addresses.inference + "/explanations/digit_segmenter",
        data=encode(digit_image(), "PNG"),
        headers={**auth_header("inference"), "Content-Type": "image/png"},
        timeout=60,
    )
    assert resp.status_code == 400, resp.text
    assert "explanations are not available" in error_fields(resp.json())[1]


def test_workers_survived_the_corpus(ts_server, ts_client, worker_pids, pids_before) -> None:
    """No case took a worker down: same PIDs, all READY, and good requests still answered."""
    after = worker_pids()
    for model, workers in pids_before.items():
        assert after.get(model) == workers, (model, workers, after.get(model))
    assert all(status == "READY" for workers in after.values() for _, status in workers), after
    good = encode(digit_image(), "PNG")
    assert ts_client.predict(good, "digit_classifier")["label"]
    assert "mask_png" in ts_client.predict(good, "digit_segmenter")
    assert "labels" in ts_client.pipeline(good)
    if TIMINGS:
        slowest = max(TIMINGS, key=TIMINGS.get)
        print(
            f"\ncorpus: {len(TIMINGS)} requests in {sum(TIMINGS.values()):.1f} s, "
            f"slowest {slowest} {TIMINGS[slowest]:.2f} s"
        )
