"""`GET /metrics` (Prometheus text): TorchServe's and cvserve's metrics per model, after traffic.

The text is read with prometheus_client's own parser, and the counters are compared before
and after a known amount of traffic: they must grow by exactly what was sent. Metrics reach
the frontend through the worker's log stream, so the scrape is polled until they arrive.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from handlers.contract import CLASSIFIER, SEGMENTER

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
TS_METRICS = (
    "ts_inference_requests_total",
    "ts_inference_latency_microseconds",
    "ts_queue_latency_microseconds",
)
POLL_S = 30


def cvserve_metric_names() -> list[str]:
    """cvserve's own metrics, as declared in metrics.yaml (the one list of their names)."""
    spec = yaml.safe_load((REPO_ROOT / "metrics.yaml").read_text())
    names = [m["name"] for kind in spec["model_metrics"].values() for m in kind]
    return [n for n in names if n.startswith("cvserve_")]


def parse(text: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there are none)."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


#: What the traffic below must add: (sample name, labels) -> count.
EXPECTED = {
    ("ts_inference_requests_total", (("model_name", CLASSIFIER),)): 4,  # 3 + 1 explanation
    ("ts_inference_requests_total", (("model_name", SEGMENTER),)): 2,
    ("cvserve_requests_total", (("ModelName", CLASSIFIER), ("Outcome", "ok"))): 4,
    ("cvserve_requests_total", (("ModelName", SEGMENTER), ("Outcome", "ok"))): 1,
    ("cvserve_requests_total", (("ModelName", SEGMENTER), ("Outcome", "bad_input"))): 1,
    ("cvserve_requests_total", (("ModelName", CLASSIFIER), ("Outcome", "bad_input"))): 0,
    ("cvserve_predicted_labels_total", (("ModelName", CLASSIFIER),)): 3,  # not explanations
    ("cvserve_explanation_seconds_count", (("ModelName", CLASSIFIER),)): 1,
    ("cvserve_inference_seconds_count", (("ModelName", CLASSIFIER),)): 4,
}


@pytest.fixture(scope="module")
def scrape(ts_server) -> Callable[[], list[Sample]]:
    def get() -> list[Sample]:
        resp = requests.get(f"{ts_server.addresses.metrics}/metrics", timeout=30)  # no token
        assert resp.status_code == 200
        return parse(resp.text)

    return get


@pytest.fixture(scope="module")
def traffic(scrape, ts_client, digits, scene, garbage) -> tuple[list[Sample], list[Sample]]:
    """(before, after) around 3 predictions, an explanation, a segmentation and a bad request;
    `after` is polled until every expected count has arrived (or POLL_S passed)."""
    before = scrape()
    for data, _ in digits[:3]:
        ts_client.predict(data, CLASSIFIER)
    ts_client.explain(digits[0][0], CLASSIFIER, method="saliency")
    ts_client.predict(scene[0], SEGMENTER)
    with pytest.raises(Exception):  # noqa: B017 - any error: only its metric matters here
        ts_client.predict(garbage, SEGMENTER)
    deadline = time.monotonic() + POLL_S
    while True:
        after = scrape()
        arrived = all(
            total(after, name, **dict(labels)) - total(before, name, **dict(labels)) >= count
            for (name, labels), count in EXPECTED.items()
        )
        if arrived or time.monotonic() > deadline:
            return before, after
        time.sleep(0.2)


@pytest.mark.parametrize(("name", "labels"), list(EXPECTED))
def test_counters_grow_by_exactly_the_traffic_sent(traffic, name, labels) -> None:
    before, after = traffic
    labels = dict(labels)
    grown = total(after, name, **labels) - total(before, name, **labels)
    assert grown == EXPECTED[(name, tuple(labels.items()))], (name, labels, grown)


@pytest.mark.parametrize("name", TS_METRICS)
@pytest.mark.parametrize("model", [CLASSIFIER, SEGMENTER])
def test_torchserve_metrics(traffic, name, model) -> None:
    _, after = traffic
    # TorchServe declares its latencies as counters: the parser names their samples `_total`.
    names = {name, f"{name}_total"}
    assert any(s.name in names and s.labels.get("model_name") == model for s in after), name


def test_cvserve_metrics_declared_and_labelled(traffic) -> None:
    _, after = traffic
    names = cvserve_metric_names()
    assert names, "metrics.yaml declares cvserve's handler metrics under model_metrics"
    suffixes = ("", "_total", "_bucket", "_count", "_sum")
    labelled = {s.name for s in after if s.labels.get("ModelName", "").startswith("digit_")}
    missing = [n for n in names if not any(n + suffix in labelled for suffix in suffixes)]
    assert not missing, f"not in /metrics with a ModelName label after traffic: {missing}"
