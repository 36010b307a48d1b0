"""`GET /metrics` (Prometheus text): TorchServe's and cvserve's metrics per model, after traffic."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests
import yaml

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
TS_METRICS = (
    "ts_inference_requests_total",
    "ts_inference_latency_microseconds",
    "ts_queue_latency_microseconds",
)


def cvserve_metric_names() -> list[str]:
    """cvserve's own metrics, as declared in metrics.yaml (the one list of their names)."""
    spec = yaml.safe_load((REPO_ROOT / "metrics.yaml").read_text())
    names = [m["name"] for kind in spec["model_metrics"].values() for m in kind]
    return [n for n in names if n.startswith("cvserve_")]


@pytest.fixture(scope="module")
def metrics_text(ts_server, ts_client, digits, scene, garbage) -> str:
    """The metrics after predictions, an explanation, a segmentation and a bad request."""
    for data, _ in digits[:3]:
        ts_client.predict(data, "digit_classifier")
    ts_client.explain(digits[0][0], "digit_classifier", method="saliency")
    ts_client.predict(scene[0], "digit_segmenter")
    with pytest.raises(Exception):  # noqa: B017 - any error: only its metric matters here
        ts_client.predict(garbage, "digit_segmenter")
    time.sleep(1)  # metrics reach the frontend through the worker's log stream
    resp = requests.get(f"{ts_server.addresses.metrics}/metrics", timeout=30)  # no token needed
    assert resp.status_code == 200
    return resp.text


@pytest.mark.parametrize("name", TS_METRICS)
@pytest.mark.parametrize("model", ["digit_classifier", "digit_segmenter"])
def test_torchserve_metrics(metrics_text, name, model) -> None:
    assert re.search(rf'^{name}\{{model_name="{model}"', metrics_text, re.MULTILINE), name


def test_cvserve_metrics_declared_and_labelled(metrics_text) -> None:
    names = cvserve_metric_names()
    assert names, "metrics.yaml declares cvserve's handler metrics under model_metrics"
    missing = [
        n
        for n in names
        if not re.search(
            rf'^{n}(_bucket|_count|_sum)?\{{[^}}]*ModelName="digit_', metrics_text, re.MULTILINE
        )
    ]
    assert not missing, f"not in /metrics with a ModelName label after traffic: {missing}"


def test_outcomes_and_labels(metrics_text) -> None:
    lines = metrics_text.splitlines()
    outcomes = [line for line in lines if line.startswith("cvserve_requests_total{")]
    assert any('ModelName="digit_classifier"' in line for line in outcomes)
    assert any("bad_input" in line and 'ModelName="digit_segmenter"' in line for line in outcomes)
    assert any(
        line.startswith("cvserve_predicted_labels_total{")
        and 'ModelName="digit_classifier"' in line
        for line in lines
    )
