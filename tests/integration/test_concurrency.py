"""Concurrent requests: batching must not mix answers up or let a bad request hurt others."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tools.client import CvserveError

pytestmark = pytest.mark.integration


def test_concurrent_predictions_match_sequential(ts_server, ts_client, digits, scene) -> None:
    jobs = [(data, "digit_classifier") for data, _ in digits[:12]] + [
        (scene[0], "digit_segmenter")
    ] * 4
    expected = [ts_client.predict(data, model) for data, model in jobs]

    def call(job: tuple[bytes, str]) -> dict:
        return ts_server.client().predict(*job)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(call, jobs * 2))
    for answer, want in zip(answers, expected * 2, strict=True):
        assert answer["model"] == want["model"]
        if want["model"] == "digit_classifier":
            assert answer["label"] == want["label"]
            assert answer["score"] == pytest.approx(want["score"], abs=1e-4)
        else:
            assert answer["mask_png"] == want["mask_png"]
            assert answer["objects"] == want["objects"]


def test_bad_request_does_not_fail_its_batch(ts_server, digits, garbage) -> None:
    """Sent together, the bad requests get 400 and their neighbours their answers."""
    jobs = [garbage if i % 4 == 0 else digits[i][0] for i in range(16)]

    def call(data: bytes) -> int | str:
        try:
            return ts_server.client().predict(data, "digit_classifier")["label"]
        except CvserveError as exc:
            return exc.status

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(call, jobs))
    for i, answer in enumerate(answers):
        if i % 4 == 0:
            assert answer == 400
        else:
            assert isinstance(answer, str), answer
