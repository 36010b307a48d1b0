"""docs/api.md against a real TorchServe: classification and segmentation, every field and form."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import requests
import torch
from api_fields import OBJECT_KEYS, PREDICTION_KEYS, SEGMENTATION_KEYS
from imaging import decode_png, png
from PIL import Image

from tools.client import CvserveError

pytestmark = pytest.mark.integration

DIGIT_CLASSES = [str(d) for d in range(10)]


def check_classification(body: dict, topk: int = 5) -> None:
    assert set(body) == PREDICTION_KEYS
    assert (body["model"], body["version"]) == ("digit_classifier", "1.0")
    assert body["label"] == DIGIT_CLASSES[body["index"]]
    assert 0.0 <= body["score"] <= 1.0
    assert len(body["topk"]) == topk
    scores = [t["score"] for t in body["topk"]]
    assert scores == sorted(scores, reverse=True)
    assert body["topk"][0] == {
        "label": body["label"],
        "index": body["index"],
        "score": body["score"],
    }
    for entry in body["topk"]:
        assert set(entry) == {"label", "index", "score"}
        assert entry["label"] == DIGIT_CLASSES[entry["index"]]


class TestClassifier:
    def test_raw_body(self, ts_client, digits) -> None:
        check_classification(ts_client.predict(digits[0][0], "digit_classifier"))

    def test_predictions_mean_something(self, ts_client, digits) -> None:
        right = sum(ts_client.predict(data, "digit_classifier")["label"] == y for data, y in digits)
        assert right >= len(digits) * 0.6, f"{right}/{len(digits)} right after a tiny training"

    def test_topk_as_multipart_field_and_json(self, ts_server, auth_header, digits) -> None:
        url = f"{ts_server.addresses.inference}/predictions/digit_classifier"
        resp = requests.post(
            url,
            files={"data": digits[0][0]},
            data={"topk": "3"},
            headers=auth_header("inference"),
            timeout=60,
        )
        assert resp.status_code == 200, resp.text
        check_classification(resp.json(), topk=3)
        body = {"image": base64.b64encode(digits[0][0]).decode(), "topk": 2}
        resp = requests.post(url, json=body, headers=auth_header("inference"), timeout=60)
        assert resp.status_code == 200, resp.text
        check_classification(resp.json(), topk=2)

    def test_explicit_version_route(self, ts_client, digits) -> None:
        body = ts_client.predict(digits[0][0], "digit_classifier", version="1.0")
        check_classification(body)

    def test_images_list(self, ts_client, digits) -> None:
        files = [data for data, _ in digits[:5]]
        body = ts_client.predict_many(files, "digit_classifier", topk=3)
        assert (body["model"], body["version"]) == ("digit_classifier", "1.0")
        assert len(body["predictions"]) == 5
        for data, prediction in zip(files, body["predictions"], strict=True):
            check_classification(prediction, topk=3)
            single = ts_client.predict(data, "digit_classifier", topk=3)
            assert prediction["label"] == single["label"]
            assert prediction["score"] == pytest.approx(single["score"], abs=1e-4)

    @pytest.mark.parametrize(
        ("options", "status", "words"),
        [
            ({"topk": 0}, 422, "topk"),
            ({"topk": 11}, 422, "topk"),
            ({"colour": "red"}, 422, "unknown option"),
        ],
    )
    def test_invalid_options(self, ts_client, digits, options, status, words) -> None:
        with pytest.raises(CvserveError) as info:
            ts_client.predict(digits[0][0], "digit_classifier", **options)
        assert info.value.status == status
        assert words in info.value.message

    def test_unreadable_image(self, ts_client, garbage) -> None:
        with pytest.raises(CvserveError) as info:
            ts_client.predict(garbage, "digit_classifier")
        assert info.value.status == 400
        assert "could not be decoded" in info.value.message


class TestSegmenter:
    def test_fields(self, ts_client, scene) -> None:
        body = ts_client.predict(scene[0], "digit_segmenter")
        assert set(body) == SEGMENTATION_KEYS
        assert (body["model"], body["version"]) == ("digit_segmenter", "1.0")
        assert (body["width"], body["height"]) == (64, 64)
        assert body["classes"] == ["background", *DIGIT_CLASSES]
        mask = decode_png(body["mask_png"])
        assert mask.size == (64, 64) and mask.mode in ("L", "P")
        values = np.asarray(mask)
        assert values.max() < len(body["classes"])
        counts = np.bincount(values.ravel(), minlength=len(body["classes"]))
        expected = {body["classes"][i]: int(n) for i, n in enumerate(counts) if n}
        assert body["class_pixels"] == expected
        assert body["objects"], "the tiny segmenter finds the digits of this scene"
        x0s = [o["bbox"][0] for o in body["objects"]]
        assert x0s == sorted(x0s)
        for obj in body["objects"]:
            assert set(obj) == OBJECT_KEYS
            assert obj["class"] == body["classes"][obj["class_index"]] != "background"
            x0, y0, x1, y1 = obj["bbox"]
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            assert obj["area"] >= 4 and obj["area"] <= (x1 - x0) * (y1 - y0)
            assert 0.0 <= obj["score"] <= 1.0

    def test_overlay_and_min_area(self, ts_client, scene) -> None:
        plain = ts_client.predict(scene[0], "digit_segmenter")
        body = ts_client.predict(scene[0], "digit_segmenter", overlay=True, min_area=10_000)
        assert body["objects"] == []  # dropped from objects ...
        assert body["mask_png"] == plain["mask_png"]  # ... not from the mask
        overlay = decode_png(body["overlay_png"])
        assert overlay.size == (64, 64) and overlay.mode == "RGB"

    def test_any_size_and_mode(self, ts_client) -> None:
        rng = np.random.default_rng(0)
        image = Image.fromarray(rng.integers(0, 255, (48, 96, 3), dtype=np.uint8), "RGB")
        body = ts_client.predict(png(image), "digit_segmenter")
        assert (body["width"], body["height"]) == (96, 48)
        assert decode_png(body["mask_png"]).size == (96, 48)

    def test_jpeg_input(self, ts_client, scene) -> None:
        buffer = io.BytesIO()
        Image.open(io.BytesIO(scene[0])).save(buffer, format="JPEG", quality=95)
        body = ts_client.predict(buffer.getvalue(), "digit_segmenter")
        assert (body["width"], body["height"]) == (64, 64)


class TestDescribe:
    def test_models_listed(self, ts_client) -> None:
        names = {m["modelName"] for m in ts_client.models()}
        assert {"digit_classifier", "digit_segmenter"} <= names

    @pytest.mark.parametrize(
        ("name", "task", "classes"),
        [("digit_classifier", "classification", 10), ("digit_segmenter", "segmentation", 11)],
    )
    def test_describe_versions_and_card(self, ts_client, name, task, classes) -> None:
        (desc,) = ts_client.describe(name)
        assert desc["modelName"] == name and desc["modelVersion"] == "1.0"
        assert desc["workers"] and all(w["status"] == "READY" for w in desc["workers"])
        assert desc["minWorkers"] == desc["maxWorkers"] == 1  # the archive's model-config
        (custom,) = ts_client.describe(name, customized=True)
        card = custom["customizedMetadata"]
        assert (card["model"], card["version"], card["task"]) == (name, "1.0", task)
        assert len(card["classes"]) == classes
        # The archive pins neither device nor threads: the worker chose them on this host.
        serving = card["serving"]
        assert "cores here over 1 workers" in serving["torch_threads_why"], serving
        assert serving["device"].startswith("cuda" if torch.cuda.is_available() else "cpu")

    def test_ping(self, ts_client) -> None:
        assert ts_client.ping() == {"status": "Healthy"}
