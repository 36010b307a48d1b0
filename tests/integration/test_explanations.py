"""`POST /explanations/digit_classifier` for every method (docs/api.md, Explanations)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from api_fields import EXPLANATION_KEYS
from imaging import decode_png, png
from PIL import Image

from handlers.contract import EXPLANATION_METHODS
from tools.client import CvserveError

pytestmark = pytest.mark.integration

METHODS = EXPLANATION_METHODS


@pytest.mark.parametrize("method", METHODS)
def test_each_method(ts_client, digits, method) -> None:
    data, _label = digits[0]
    predicted = ts_client.predict(data, "digit_classifier")
    body = ts_client.explain(data, "digit_classifier", method=method)
    assert set(body) == EXPLANATION_KEYS
    assert (body["model"], body["version"], body["method"]) == ("digit_classifier", "1.0", method)
    # Default target: the predicted class.
    assert body["target"]["label"] == predicted["label"]
    assert body["target"]["index"] == predicted["index"]
    assert (body["width"], body["height"]) == (28, 28)
    heatmap, overlay = decode_png(body["heatmap_png"]), decode_png(body["overlay_png"])
    assert heatmap.mode == "L" and heatmap.size == (28, 28)
    assert overlay.mode == "RGB" and overlay.size == (28, 28)
    assert 0.0 <= body["stats"]["positive_fraction"] <= 1.0
    assert ("convergence_delta" in body["stats"]) == (method == "integrated_gradients")


def test_default_method_is_integrated_gradients(ts_client, digits) -> None:
    body = ts_client.explain(digits[0][0], "digit_classifier")
    assert body["method"] == "integrated_gradients"


def test_target_by_label_and_steps(ts_client, digits) -> None:
    body = ts_client.explain(digits[0][0], "digit_classifier", target="3", n_steps=4)
    assert body["target"]["label"] == "3" and body["target"]["index"] == 3
    body = ts_client.explain(digits[0][0], "digit_classifier", target=5, method="saliency")
    assert body["target"]["index"] == 5


def test_heatmap_at_input_size(ts_client, digits) -> None:
    image = Image.open(io.BytesIO(digits[1][0])).resize((56, 40))
    body = ts_client.explain(png(image), "digit_classifier", method="gradcam")
    assert (body["width"], body["height"]) == (56, 40)
    assert decode_png(body["heatmap_png"]).size == (56, 40)
    assert np.asarray(decode_png(body["overlay_png"])).shape == (40, 56, 3)


@pytest.mark.parametrize(
    "options", [{"n_steps": 0}, {"method": "lime"}, {"target": "eleven"}, {"topk": 3}]
)
def test_invalid_options(ts_client, digits, options) -> None:
    with pytest.raises(CvserveError) as info:
        ts_client.explain(digits[0][0], "digit_classifier", **options)
    assert info.value.status == 422
