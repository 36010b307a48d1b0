"""Load, batching and worker faults against the session server.

- 2,000 real digits at concurrency 32 to `digit_classifier`: every request gets exactly one
  answer, and it is the answer for THAT image (compared with the checkpoint run in-process).
- Batch isolation: `digit_classifier_b8`, the same checkpoint archived with batch size 8 and
  a 50 ms batch delay (so concurrent requests really share batches), registered into the
  session server from its model store: good and bad requests sent together each get their
  own answer.
- A worker killed with SIGKILL during load: requests in the gap fail with a 5xx or succeed,
  TorchServe starts a new worker, and every request after that succeeds.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from corpus import b64, build_corpus, digit_image, encode
from robust_support import Reference, describe, dumps, error_fields, json_or_text, management_auth

from model_src import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.integration

B8 = "digit_classifier_b8"
LOAD_REQUESTS = 2000
LOAD_CONCURRENCY = 32
CLIENT_TIMEOUT = 60


@dataclasses.dataclass
class Outcome:
    """One request's fate: its index, HTTP status, body, and seconds taken."""

    index: int
    status: int
    body: Any
    seconds: float


def post_image(
    session: requests.Session, url: str, auth: dict[str, str], data: bytes, **options: Any
) -> tuple[int, Any]:
    if options:
        resp = session.post(url, json={"image": b64(data), **options}, headers=auth, timeout=60)
    else:
        resp = session.post(
            url,
            data=data,
            headers={**auth, "Content-Type": "image/png"},
            timeout=CLIENT_TIMEOUT,
        )
    return resp.status_code, json_or_text(resp)


def run_concurrently(jobs: list[Any], worker: Any, concurrency: int) -> tuple[list[Outcome], float]:
    """`worker(session, job)` -> (status, body) for every job, `concurrency` at a time.

    Each thread has its own HTTP session (connection reuse without sharing sockets). Returns
    the outcomes in job order and the wall time.
    """
    local = threading.local()

    def call(item: tuple[int, Any]) -> Outcome:
        index, job = item
        if not hasattr(local, "session"):
            local.session = requests.Session()
        started = time.perf_counter()
        try:
            status, body = worker(local.session, job)
        except requests.RequestException as exc:  # a hang past the timeout lands here
            status, body = -1, repr(exc)
        return Outcome(index, status, body, time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        outcomes = list(pool.map(call, enumerate(jobs)))
    return outcomes, time.perf_counter() - started


def assert_matches_reference(body: Any, probs: Any, classes: list[str], where: str) -> None:
    """The server's answer is the in-process answer for the same image (label and top-k)."""
    assert isinstance(body, dict) and "topk" in body, where
    best = float(probs.max())
    assert float(probs[body["index"]]) == pytest.approx(body["score"], abs=1e-4), where
    assert best - float(probs[body["index"]]) < 1e-4, where  # the top class (ties allowed)
    assert body["label"] == classes[body["index"]], where
    for entry in body["topk"]:
        assert float(probs[entry["index"]]) == pytest.approx(entry["score"], abs=1e-4), where


# ---------------------------------------------------------------------------------------------
# Nothing lost under load


@pytest.mark.slow
def test_no_request_lost_under_load(
    ts_server: Any, real_digits: list[tuple[bytes, int]], reference: Reference
) -> None:
    files = [data for data, _ in real_digits[:LOAD_REQUESTS]]
    assert len(set(files)) == LOAD_REQUESTS  # distinct inputs: a swapped answer shows
    probs = reference.probabilities_many(files)
    url = ts_server.addresses.inference + "/predictions/digit_classifier"
    auth = management_auth(ts_server, "inference")

    outcomes, wall = run_concurrently(
        files, lambda session, data: post_image(session, url, auth, data), LOAD_CONCURRENCY
    )

    assert len(outcomes) == LOAD_REQUESTS
    failures = [o for o in outcomes if o.status != 200]
    assert not failures, [(o.index, o.status, dumps(o.body)) for o in failures[:5]]
    for o in outcomes:
        assert_matches_reference(o.body, probs[o.index], reference.classes, f"request {o.index}")
    correct = sum(o.body["label"] == reference.classes[real_digits[o.index][1]] for o in outcomes)
    latencies = sorted(o.seconds for o in outcomes)
    print(
        f"\nload: {LOAD_REQUESTS} requests, concurrency {LOAD_CONCURRENCY}, {wall:.1f} s, "
        f"{LOAD_REQUESTS / wall:.0f} req/s, p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms, max {latencies[-1]:.2f} s, "
        f"accuracy {correct / LOAD_REQUESTS:.3f}"
    )
    assert latencies[-1] < CLIENT_TIMEOUT


# ---------------------------------------------------------------------------------------------
# A batch-8 model in the session server


@pytest.fixture(scope="module")
def batch8_model(
    ts_server: Any, model_store: Path, checkpoint_root: Path, tmp_path_factory
) -> Iterator[str]:
    """`digit_classifier_b8`: the session classifier's weights, batch size 8, 50 ms delay.

    Archived into the session model store (the only place `allowed_urls` admits) and
    registered over the management API; unregistered and removed afterwards.
    """
    from tools.archive import _stamp_path, archive_checkpoint

    model, card = load_checkpoint(checkpoint_root / "digit_classifier" / "1.0" / "model.pt", "cpu")
    checkpoint = tmp_path_factory.mktemp("b8") / B8 / "1.0" / "model.pt"
    save_checkpoint(checkpoint, model, dataclasses.replace(card, name=B8))
    archive = archive_checkpoint(
        checkpoint, model_store, min_workers=1, max_workers=1, batch_size=8, max_batch_delay=50
    ).path
    management = ts_server.addresses.management
    resp = requests.post(
        f"{management}/models",
        params={"url": archive.name, "initial_workers": 1, "synchronous": "true"},
        headers=management_auth(ts_server),
        timeout=300,
    )
    assert resp.status_code == 200, resp.text
    try:
        yield B8
    finally:
        requests.delete(f"{management}/models/{B8}", headers=management_auth(ts_server), timeout=60)
        archive.unlink(missing_ok=True)
        _stamp_path(archive).unlink(missing_ok=True)


def b8_worker(ts_server: Any) -> dict[str, Any]:
    versions = describe(ts_server.addresses.management, management_auth(ts_server), B8)
    assert len(versions) == 1 and versions[0]["batchSize"] == 8, versions
    return versions[0]


def test_batch_isolation(
    ts_server: Any, batch8_model: str, real_digits: list[tuple[bytes, int]], reference: Reference
) -> None:
    """48 good and 24 bad requests at once: each good one its own answer, each bad one its
    error, whatever batch they shared."""
    assert b8_worker(ts_server)["maxBatchDelay"] == 50
    corpus = {c.name: c for c in build_corpus(8_000_000)}
    bad_kinds = [
        (corpus["random_bytes"].payload, {}, 400),
        (corpus["truncated_png"].payload, {}, 400),
        (corpus["png_bomb_header_50000"].payload, {}, 413),
        (encode(digit_image(), "PNG"), {"topk": 0}, 422),
        (corpus["sparse_valid_7000x7000_png"].payload, {}, 413),
        (b"", {}, 400),
    ]
    good = [data for data, _ in real_digits[:48]]
    jobs: list[tuple[bytes, dict, int]] = []
    good_iter = iter(good)
    for i in range(72):
        if i % 3 == 2:
            jobs.append(bad_kinds[(i // 3) % len(bad_kinds)])
        else:
            jobs.append((next(good_iter), {"topk": 3}, 200))
    probs = reference.probabilities_many([data for data, _, status in jobs if status == 200])
    url = ts_server.addresses.inference + f"/predictions/{B8}"
    auth = management_auth(ts_server, "inference")

    def worker(session: requests.Session, job: tuple[bytes, dict, int]) -> tuple[int, Any]:
        return post_image(session, url, auth, job[0], **job[1])

    outcomes, wall = run_concurrently(jobs, worker, 24)
    good_index = 0
    for outcome, (_, options, status) in zip(outcomes, jobs, strict=True):
        where = f"request {outcome.index}: {outcome.status} {dumps(outcome.body)}"
        assert outcome.status == status, where
        if status == 200:
            assert_matches_reference(outcome.body, probs[good_index], reference.classes, where)
            assert len(outcome.body["topk"]) == options["topk"], where
            good_index += 1
        else:
            assert error_fields(outcome.body)[0] == status, where
    print(f"\nbatch isolation: {len(jobs)} requests in {wall:.1f} s")


@pytest.mark.slow
def test_worker_sigkill_during_load(
    ts_server: Any, batch8_model: str, real_digits: list[tuple[bytes, int]], reference: Reference
) -> None:
    """SIGKILL the worker mid-load: no hang, gap requests 5xx or right, then all right."""
    files = [data for data, _ in real_digits[:400]]
    probs = reference.probabilities_many(files)
    url = ts_server.addresses.inference + f"/predictions/{B8}"
    auth = management_auth(ts_server, "inference")
    old_pid = b8_worker(ts_server)["workers"][0]["pid"]
    answered = threading.Semaphore(0)
    killed_at: list[float] = []

    def worker(session: requests.Session, data: bytes) -> tuple[int, Any]:
        result = post_image(session, url, auth, data)
        answered.release()
        return result

    def killer() -> None:
        for _ in range(60):  # kill after 60 answers: the load is well under way
            answered.acquire(timeout=CLIENT_TIMEOUT)
        os.kill(old_pid, signal.SIGKILL)
        killed_at.append(time.perf_counter())

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    outcomes, wall = run_concurrently(files, worker, 8)
    thread.join(timeout=5)
    assert killed_at, "the worker was never killed"

    failed = [o for o in outcomes if o.status != 200]
    for o in outcomes:
        where = f"request {o.index}: {o.status} {dumps(o.body)}"
        if o.status == 200:
            assert_matches_reference(o.body, probs[o.index], reference.classes, where)
        else:  # a clear server-side error, never a hang (-1) or a 4xx
            assert 500 <= o.status < 600, where
            assert error_fields(o.body) is not None, where

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        workers = b8_worker(ts_server)["workers"]
        if workers and all(w["status"] == "READY" and w["pid"] != old_pid for w in workers):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"no new READY worker after SIGKILL: {b8_worker(ts_server)}")
    after, _ = run_concurrently(
        files[:64], lambda session, data: post_image(session, url, auth, data), 8
    )
    for o in after:
        assert o.status == 200, (o.index, o.status, dumps(o.body))
        assert_matches_reference(o.body, probs[o.index], reference.classes, f"after {o.index}")
    print(
        f"\nSIGKILL: {len(outcomes)} requests in {wall:.1f} s, {len(failed)} failed during the "
        f"gap with {sorted({(o.status, error_fields(o.body)[1]) for o in failed})}; new worker pid "
        f"{b8_worker(ts_server)['workers'][0]['pid']} (was {old_pid})"
    )
