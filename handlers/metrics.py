"""cvserve's custom handler metrics: every name in one place, recorded through TorchServe.

TorchServe drops a custom metric unless `metrics.yaml` (named by `metrics_config` in
config.properties) declares it under `model_metrics` with the same name, type and dimension
names, in the same order: our own dimensions first, then `ModelName` and `Level`, which
TorchServe's metrics cache appends to every model metric (TorchServe adds `Hostname` last on
the frontend). `METRICS` below is the source the repo's `metrics.yaml` must match; a unit test
checks it does.

Exposed on the metrics port (Prometheus; counters keep their `_total` name, histograms add
`_bucket`/`_sum`/`_count`, default buckets 5 ms .. 10 s):

- `cvserve_requests_total` (counter, label `Outcome`): requests by outcome: `ok`, `bad_input`
  (a 4xx), `error` (a 500), `passthrough` (an upstream error object answered unchanged);
- `cvserve_preprocess_seconds` (histogram): decode + preprocess time of one batch;
- `cvserve_inference_seconds` (histogram): the forward pass of one batch;
- `cvserve_postprocess_seconds` (histogram): encoding one batch's responses (PNGs included);
- `cvserve_explanation_seconds` (histogram): one explanation (Captum), per image;
- `cvserve_predicted_labels_total` (counter, label `Label`): the classifier's top-1 label per
  image; the segmenter's class of each reported object;
- `cvserve_foreground_fraction` (histogram): the segmenter's non-background share per mask.

Every metric also carries `ModelName`, `Level` (= "Model") and `Hostname`. Recording never
fails a request: a metrics error is logged and ignored.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

REQUESTS = "cvserve_requests_total"
PREPROCESS_SECONDS = "cvserve_preprocess_seconds"
INFERENCE_SECONDS = "cvserve_inference_seconds"
POSTPROCESS_SECONDS = "cvserve_postprocess_seconds"
EXPLANATION_SECONDS = "cvserve_explanation_seconds"
PREDICTED_LABELS = "cvserve_predicted_labels_total"
FOREGROUND_FRACTION = "cvserve_foreground_fraction"

OUTCOME_OK = "ok"
OUTCOME_BAD_INPUT = "bad_input"
OUTCOME_ERROR = "error"
OUTCOME_PASSTHROUGH = "passthrough"

DEFAULT_DIMENSIONS = ("ModelName", "Level")
"""Appended by TorchServe's metrics cache to every model metric, in this order."""


@dataclass(frozen=True)
class MetricSpec:
    """One declared metric: `dimensions` are ours, `DEFAULT_DIMENSIONS` follow them."""

    name: str
    type: str  # "counter" | "histogram" (metrics.yaml section names)
    unit: str
    dimensions: tuple[str, ...] = ()


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(REQUESTS, "counter", "Count", ("Outcome",)),
    MetricSpec(PREPROCESS_SECONDS, "histogram", "s"),
    MetricSpec(INFERENCE_SECONDS, "histogram", "s"),
    MetricSpec(POSTPROCESS_SECONDS, "histogram", "s"),
    MetricSpec(EXPLANATION_SECONDS, "histogram", "s"),
    MetricSpec(PREDICTED_LABELS, "counter", "Count", ("Label",)),
    MetricSpec(FOREGROUND_FRACTION, "histogram", "ratio"),
)

# TorchServe's frontend parses "Name:value" pairs split on "," and ":" and ends a field at
# "|": a label value must not contain them (class names may: "golden retriever, dog").
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def label_value(text: str) -> str:
    """A class name made safe as a metric dimension value."""
    return _UNSAFE.sub("_", str(text)).strip("_") or "_"


class HandlerMetrics:
    """Records cvserve's metrics on TorchServe's per-worker cache (`context.metrics`).

    Made per `handle` call; a `None` cache (e.g. a bare test context) records nothing.
    """

    def __init__(self, cache: Any) -> None:
        self._cache = cache

    def request(self, outcome: str, idx: int | None = None) -> None:
        self._record("add_counter", REQUESTS, 1, idx=idx, dims={"Outcome": outcome})

    def seconds(self, name: str, value: float) -> None:
        self._record("add_time", name, value, unit="s", histogram=True)

    def label(self, label: str, count: int = 1) -> None:
        self._record("add_counter", PREDICTED_LABELS, count, dims={"Label": label_value(label)})

    def foreground(self, fraction: float) -> None:
        self._record("add_metric", FOREGROUND_FRACTION, fraction, unit="ratio", histogram=True)

    def _record(
        self,
        method: str,
        name: str,
        value: float,
        *,
        idx: int | None = None,
        dims: dict[str, str] | None = None,
        unit: str | None = None,
        histogram: bool = False,
    ) -> None:
        if self._cache is None:
            return
        try:
            from ts.metrics.dimension import Dimension
            from ts.metrics.metric_type_enum import MetricTypes

            dimensions = [Dimension(k, v) for k, v in (dims or {}).items()]  # a fresh list:
            # TorchServe appends ModelName/Level to the list it is given.
            kwargs: dict[str, Any] = {"dimensions": dimensions}
            if idx is not None:
                kwargs["idx"] = idx
            if unit is not None:
                kwargs["unit"] = unit
            if histogram:
                kwargs["metric_type"] = MetricTypes.HISTOGRAM
            getattr(self._cache, method)(name, value, **kwargs)
        except Exception:  # metrics are best effort, never a failed request
            logger.warning("could not record metric %s", name, exc_info=True)
