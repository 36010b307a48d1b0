"""Custom metrics: metrics.yaml declares exactly what the handlers emit, in a form TorchServe's
frontend parses (its Java pattern, its dimension order)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch
import ts
import yaml
from test_handlers_support import (
    METRICS_YAML,
    b64,
    encode,
    gray_image,
    make_classifier,
    make_context,
    make_segmenter,
    metric_lines,
    run_batch,
)

from handlers.classifier import ClassifierHandler
from handlers.metrics import (
    DEFAULT_DIMENSIONS,
    METRICS,
    PREDICTED_LABELS,
    REQUESTS,
    HandlerMetrics,
    label_value,
)
from handlers.segmenter import SegmenterHandler

# org.pytorch.serve.metrics.Metric.PATTERN (TorchServe 0.12 frontend), in Python syntax.
FRONTEND_PATTERN = re.compile(
    r"\s*([\w\s]+)\.([\w\s]+):([0-9\-,.e]+)\|#([^|]*)(\|#type:([^|,]+))?"
    r"\|#hostname:([^,]+),([^,]+)(,(.*))?"
)
TS_METRICS_YAML = Path(ts.__file__).parent / "configs" / "metrics.yaml"


@pytest.fixture(scope="module", autouse=True)
def keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def declared() -> dict[str, tuple[str, list[str]]]:
    """metrics.yaml's model metrics: name -> (type, dimensions)."""
    model_metrics = yaml.safe_load(METRICS_YAML.read_text())["model_metrics"]
    return {
        spec["name"]: (kind, spec["dimensions"])
        for kind, specs in model_metrics.items()
        for spec in specs
    }


def test_metrics_yaml_declares_every_handler_metric_exactly():
    found = declared()
    for spec in METRICS:
        assert found[spec.name] == (spec.type, [*spec.dimensions, *DEFAULT_DIMENSIONS])
    ours = {name for name in found if name.startswith("cvserve_")}
    assert ours == {spec.name for spec in METRICS}


def test_metrics_yaml_keeps_torchserve_defaults():
    ours, theirs = (
        yaml.safe_load(METRICS_YAML.read_text()),
        yaml.safe_load(TS_METRICS_YAML.read_text()),
    )
    assert ours["dimensions"] == theirs["dimensions"]
    assert ours["ts_metrics"] == theirs["ts_metrics"]
    for kind, specs in theirs["model_metrics"].items():
        assert all(spec in ours["model_metrics"][kind] for spec in specs)


def parse_lines(caplog) -> list[dict]:
    parsed = []
    for line in metric_lines(caplog):
        match = FRONTEND_PATTERN.fullmatch(line)
        assert match, f"TorchServe's frontend would drop: {line}"
        dims = [pair.split(":") for pair in match.group(4).split(",")]
        assert all(len(pair) == 2 for pair in dims), line  # the frontend splits on , and :
        parsed.append(
            {
                "name": match.group(1),
                "value": float(match.group(3)),
                "type": match.group(6),
                "dims": dict(dims),
                "dim_names": [d[0] for d in dims],
            }
        )
    return parsed


def test_emitted_metrics_parse_and_match_their_declaration(tmp_path, caplog):
    classifier_dir, segmenter_dir = tmp_path / "c", tmp_path / "s"
    make_classifier(classifier_dir, classes=["a, b", "c:d", "e|f"])
    make_segmenter(segmenter_dir)
    caplog.set_level(logging.INFO)
    classifier = ClassifierHandler()
    classifier_context = make_context(classifier_dir, "c")
    classifier.handle(None, classifier_context)
    png = encode(gray_image())
    rows = [
        {"body": png},
        {"body": b"bad"},
        {"body": {"image": b64(png), "method": "saliency"}},
        {"body": {"error": {"status": 400, "type": "InvalidInput", "message": "m"}}},
    ]
    run_batch(classifier, classifier_context, rows, explain=[False, False, True, False])
    segmenter = SegmenterHandler()
    segmenter_context = make_context(segmenter_dir, "s")
    segmenter.handle(None, segmenter_context)
    run_batch(segmenter, segmenter_context, [{"body": png}])

    assert "Failed to update metric" not in caplog.text
    lines = [m for m in parse_lines(caplog) if m["name"].startswith("cvserve_")]
    specs = declared()
    for metric in lines:
        kind, dims = specs[metric["name"]]
        assert metric["dim_names"] == dims
        assert metric["type"] == kind.upper()
        assert metric["dims"]["Level"] == "Model"
    outcomes = [
        (m["dims"]["ModelName"], m["dims"]["Outcome"]) for m in lines if m["name"] == REQUESTS
    ]
    assert sorted(outcomes) == [
        ("c", "bad_input"),
        ("c", "ok"),
        ("c", "ok"),
        ("c", "passthrough"),
        ("s", "ok"),
    ]
    labels = [
        m["dims"]["Label"]
        for m in lines
        if m["name"] == PREDICTED_LABELS and m["dims"]["ModelName"] == "c"
    ]
    assert len(labels) == 1 and labels[0] in {"a_b", "c_d", "e_f"}
    names = {m["name"] for m in lines}
    assert {
        "cvserve_preprocess_seconds",
        "cvserve_inference_seconds",
        "cvserve_postprocess_seconds",
        "cvserve_explanation_seconds",
        "cvserve_foreground_fraction",
    } <= names
    fractions = [m["value"] for m in lines if m["name"] == "cvserve_foreground_fraction"]
    assert len(fractions) == 1 and 0.0 <= fractions[0] <= 1.0


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("7", "7"),
        ("golden retriever, dog", "golden_retriever_dog"),
        ("a:b|c", "a_b_c"),
        ("", "_"),
        ("ünï", "n"),
    ],
)
def test_label_values_are_safe_for_the_frontend(text, safe):
    assert label_value(text) == safe


def test_recording_never_fails_a_request(caplog):
    HandlerMetrics(None).request("ok")  # a bare context: nothing recorded

    class Broken:
        def add_counter(self, *args, **kwargs):
            raise RuntimeError("metrics backend down")

    HandlerMetrics(Broken()).request("ok", 0)
    assert "could not record metric cvserve_requests_total" in caplog.text
