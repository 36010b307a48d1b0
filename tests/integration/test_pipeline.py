"""`POST /wfpredict/digit_pipeline` (docs/api.md, Pipeline and Pipeline errors)."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from imaging import decode_png
from PIL import Image

from tools.client import CvserveError, raise_for_answer

pytestmark = pytest.mark.integration

KEYS = {"width", "height", "mask_png", "objects", "labels", "models"}
MODELS = {
    "segmenter": {"name": "digit_segmenter", "version": "1.0"},
    "classifier": {"name": "digit_classifier", "version": "1.0"},
}


def wfpredict(ts_server, auth_header, headers=None, **kwargs) -> requests.Response:
    """A raw call (the client would raise on error objects; these tests look at the body)."""
    url = f"{ts_server.addresses.inference}/wfpredict/digit_pipeline"
    headers = {**auth_header("inference"), **(headers or {})}
    return requests.post(url, headers=headers, timeout=120, **kwargs)


def test_known_scene(ts_client, scene, pipeline_module) -> None:
    """Labels = the classifier's own predictions on the same cuts of the segmenter's objects."""
    data, true_labels = scene
    body = ts_client.pipeline(data)
    assert set(body) == KEYS
    assert (body["width"], body["height"]) == (64, 64)
    assert body["models"] == MODELS
    assert body["objects"], "the tiny segmenter finds the digits of this scene"

    segmented = ts_client.predict(data, "digit_segmenter")
    assert body["mask_png"] == segmented["mask_png"]
    assert decode_png(body["mask_png"]).size == (64, 64)
    assert len(body["objects"]) == len(segmented["objects"])
    for obj, seg in zip(body["objects"], segmented["objects"], strict=True):
        assert set(obj) == {"bbox", "area", "segmenter", "classifier", "agree"}
        assert (obj["bbox"], obj["area"]) == (seg["bbox"], seg["area"])
        assert obj["segmenter"] == {"label": seg["class"], "score": seg["score"]}
        assert set(obj["classifier"]) == {"label", "score", "topk"}
        assert obj["agree"] == (obj["classifier"]["label"] == obj["segmenter"]["label"])

    image = pipeline_module.upright(Image.open(io.BytesIO(data)))
    mask = np.asarray(decode_png(segmented["mask_png"]))
    cuts = pipeline_module.cut_objects(image, [o["bbox"] for o in segmented["objects"]], mask=mask)
    direct = ts_client.predict_many(
        [pipeline_module.png_bytes(c) for c in cuts], "digit_classifier"
    )
    expected = [p["label"] for p in direct["predictions"]]
    assert body["labels"] == expected
    assert body["labels"] == [o["classifier"]["label"] for o in body["objects"]]
    for obj, pred in zip(body["objects"], direct["predictions"], strict=True):
        assert obj["classifier"]["score"] == pytest.approx(pred["score"], abs=1e-4)
        assert obj["classifier"]["topk"] == pred["topk"]
    # With the trained defaults the labels are the scene's digits; the tiny test models are
    # only asked to be consistent, but report how they did.
    print(f"pipeline labels {body['labels']}, scene digits {true_labels}")


def test_empty_scene(ts_client, blank_png) -> None:
    body = ts_client.pipeline(blank_png)
    assert body["objects"] == [] and body["labels"] == []
    assert body["models"] == MODELS
    assert decode_png(body["mask_png"]).size == (64, 64)


def test_every_request_form(ts_server, auth_header, ts_client, scene) -> None:
    expected = ts_client.pipeline(scene[0])
    b64 = base64.b64encode(scene[0]).decode()
    for kwargs in (
        {"files": {"data": scene[0]}},
        {"json": {"image": b64}},
        {"data": scene[0], "headers": {"Content-Type": "image/png"}},
    ):
        resp = wfpredict(ts_server, auth_header, **kwargs)
        assert resp.status_code == 200, resp.text
        assert resp.json() == expected


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ("garbage", 400),  # not an image
        ("truncated", 400),  # a PNG cut short
        ("unknown_option", 422),  # a readable image with an option the pipeline lacks
        ("two_images", 400),  # the pipeline takes one image
    ],
)
def test_bad_input_real_status(
    ts_server, auth_header, ts_client, scene, garbage, payload, status
) -> None:
    """The models' status and error object, `{"error": {...}}`, with the models' words."""
    b64 = base64.b64encode(scene[0]).decode()
    kwargs = {
        "garbage": {"data": garbage, "headers": {"Content-Type": "application/octet-stream"}},
        "truncated": {"data": scene[0][:200], "headers": {"Content-Type": "image/png"}},
        "unknown_option": {"json": {"image": b64, "topk": 3}},
        "two_images": {"json": {"images": [b64, b64]}},
    }[payload]
    resp = wfpredict(ts_server, auth_header, **kwargs)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"status", "type", "message"}
    assert body["error"]["status"] == status
    if payload in ("garbage", "truncated"):
        # The same status and words as a direct model call on the same bytes.
        data = garbage if payload == "garbage" else scene[0][:200]
        direct = requests.post(
            f"{ts_server.addresses.inference}/predictions/digit_segmenter",
            data=data,
            headers={**auth_header("inference"), "Content-Type": "application/octet-stream"},
            timeout=60,
        )
        assert (direct.status_code, direct.json()) == (resp.status_code, body)
    with pytest.raises(CvserveError) as raised:  # the client raises it with its status
        raise_for_answer(resp)
    assert raised.value.status == status
    # Nothing is lost: the next request is answered.
    assert ts_client.pipeline(scene[0])["models"] == MODELS


def test_client_raises_pipeline_errors(ts_client, garbage) -> None:
    with pytest.raises(CvserveError) as info:
        ts_client.pipeline(garbage)
    assert info.value.status == 400 and "could not be decoded" in info.value.message


def test_concurrent_pipeline_calls(ts_server, ts_client, scene, blank_png) -> None:
    expected = {scene[0]: ts_client.pipeline(scene[0]), blank_png: ts_client.pipeline(blank_png)}
    inputs = [scene[0], blank_png] * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda data: ts_server.client().pipeline(data), inputs))
    for data, answer in zip(inputs, answers, strict=True):
        assert answer == expected[data]


def test_the_classifier_node_admits_every_cut(ts_server, auth_header, pipeline_module) -> None:
    """The pipeline sends up to MAX_CUTS cut-outs to its classifier node in ONE request: the
    node (the registered digit_classifier, with its archive's model-config) must admit them,
    and its own limit (max_images, 128 for classifiers) refuses more with a 413 naming it."""
    cut = io.BytesIO()
    Image.new("L", (20, 20), 0).save(cut, format="PNG")
    b64 = base64.b64encode(cut.getvalue()).decode()
    url = f"{ts_server.addresses.inference}/predictions/digit_classifier"
    headers = auth_header("inference")
    cuts = pipeline_module.MAX_CUTS
    resp = requests.post(url, json={"images": [b64] * cuts}, headers=headers, timeout=120)
    assert resp.status_code == 200, resp.text[:300]
    assert len(resp.json()["predictions"]) == cuts
    resp = requests.post(url, json={"images": [b64] * 129}, headers=headers, timeout=120)
    assert resp.status_code == 413, resp.text[:300]
    assert "limit of 128 images per request (max_images)" in resp.json()["error"]["message"]
