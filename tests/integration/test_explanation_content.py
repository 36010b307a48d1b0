"""What `/explanations` serves, checked by content, not shape (docs/api.md, Explanations).

The reference is the same handler class loaded in this process from the same checkpoint
(`in_process.InProcess`): a served map must equal it. Then, on the served maps alone: the
map follows the target, and integrated gradients' convergence delta shrinks with the steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from imaging import decode_png
from in_process import InProcess

from handlers.classifier import ClassifierHandler
from handlers.contract import CLASSIFIER, EXPLANATION_METHODS

pytestmark = pytest.mark.integration

SAMPLES = 4
MAX_GRAY_LEVELS = 2  # PNG is lossless; float noise between processes may move a level or two


@pytest.fixture(scope="module")
def in_process(checkpoint_root: Path) -> Iterator[InProcess]:
    threads = torch.get_num_threads()  # the handler sets its worker's thread count
    yield InProcess(ClassifierHandler, CLASSIFIER, checkpoint_root / CLASSIFIER / "1.0")
    torch.set_num_threads(threads)


def heat(body: dict[str, Any]) -> np.ndarray:
    return np.asarray(decode_png(body["heatmap_png"]), dtype=np.float64)


@pytest.mark.parametrize("method", EXPLANATION_METHODS)
def test_served_maps_equal_the_in_process_handler(ts_client, in_process, digits, method) -> None:
    """The predicted class and another target (the tiny test classifier's Grad-CAM map of its
    predicted class is all zero: no positive evidence in its last convolution)."""
    drawn = 0.0
    for data, _ in digits[:SAMPLES]:
        predicted = ts_client.predict(data, CLASSIFIER)["index"]
        for target in (predicted, (predicted + 1) % 10):
            served = ts_client.explain(data, CLASSIFIER, method=method, target=target)
            local = in_process.answer(data, explain=True, method=method, target=target)
            assert served["target"] == local["target"]
            gap = np.abs(heat(served) - heat(local)).max()
            assert gap <= MAX_GRAY_LEVELS, (method, target, gap)
            for key, value in local["stats"].items():
                assert served["stats"][key] == pytest.approx(value, abs=1e-3), (method, key)
            drawn += heat(served).sum()
    assert drawn > 0, f"every {method} map was empty: the comparison proved nothing"


@pytest.mark.parametrize("method", EXPLANATION_METHODS)
def test_the_map_follows_the_target(ts_client, digits, method) -> None:
    data, _ = digits[0]
    predicted = ts_client.predict(data, CLASSIFIER)["index"]
    other = (predicted + 1) % 10
    first = ts_client.explain(data, CLASSIFIER, method=method, target=predicted)
    second = ts_client.explain(data, CLASSIFIER, method=method, target=other)
    assert (first["target"]["index"], second["target"]["index"]) == (predicted, other)
    change = np.abs(heat(first) - heat(second)).mean()
    print(f"\n{method}: mean change {change:.1f} gray levels between targets")
    assert change > 1.0, (method, change)


def test_integrated_gradients_converge(ts_client, digits) -> None:
    """|sum of attributions - (logit(input) - logit(baseline))| shrinks with more steps and
    is small at 128."""
    deltas = {}
    for steps in (4, 32, 128):
        deltas[steps] = [
            abs(ts_client.explain(data, CLASSIFIER, n_steps=steps)["stats"]["convergence_delta"])
            for data, _ in digits[:SAMPLES]
        ]
    print(f"\nconvergence deltas {deltas}")
    # Measured on the tiny test classifier: means 0.42 / 0.05 / 0.01, at most 0.015 at 128.
    assert np.mean(deltas[4]) > np.mean(deltas[32]) > np.mean(deltas[128]), deltas
    assert max(deltas[128]) < 0.05, deltas
