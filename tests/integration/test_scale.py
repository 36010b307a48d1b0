"""Segmentation at any size through a real TorchServe: the `object_size` option is validated,
big pages come back at their own size, and `tools.eval_pipeline` scores the served pipeline
on held-out pages end to end."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from imaging import decode_png
from PIL import Image

from tools.client import CvserveError
from tools.eval_pipeline import held_out_pages, held_out_scenes, png, score_pipeline

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("value", [0.5, 1e9, "big", -3, True])
def test_object_size_out_of_range_is_a_422_naming_it(ts_client, scene, value) -> None:
    with pytest.raises(CvserveError) as err:
        ts_client.predict(scene[0], "digit_segmenter", object_size=value)
    assert err.value.status == 422
    assert "object_size" in err.value.message


def test_object_size_past_the_pixel_limit_is_a_422_saying_what_works(ts_client) -> None:
    """An object size that would enlarge a big image past the pixel limit (40 M) is refused
    before any forward pass, with the smallest size that works."""
    big = Image.new("L", (3000, 2000))
    with pytest.raises(CvserveError) as err:
        ts_client.predict(png(big), "digit_segmenter", object_size=2)
    assert err.value.status == 422 and "past the limit" in err.value.message


@pytest.fixture(scope="module")
def pages():
    return held_out_pages(3, seed=0, canvas=[96, 300], digits=[2, 12], digit_size=[20, 48])


def test_pages_come_back_at_their_own_size(ts_client, pages) -> None:
    for image, _, _ in pages.pages:
        for body in (
            ts_client.predict(png(image), "digit_segmenter"),
            ts_client.predict(png(image), "digit_segmenter", object_size=20),
        ):
            assert (body["width"], body["height"]) == image.size
            assert decode_png(body["mask_png"]).size == image.size
            for obj in body["objects"]:
                x0, y0, x1, y1 = obj["bbox"]
                assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height


def test_served_pipeline_page_evaluation_end_to_end(ts_client, pages) -> None:
    scores = score_pipeline(ts_client, pages)
    assert scores["images"] == 3
    assert scores["objects"] == sum(len(truth) for _, truth, _ in pages.pages) > 0
    answers = [ts_client.pipeline(png(image)) for image, _, _ in pages.pages]
    assert scores["found"] == sum(len(a["objects"]) for a in answers)
    assert 0 <= scores["matched"] <= min(scores["objects"], scores["found"])
    for key in ("precision", "recall", "f1", "label_accuracy", "mean_dice"):
        assert math.isnan(scores[key]) or 0.0 <= scores[key] <= 1.0
    assert scores["seconds_per_page"] > 0
    assert decode_png(answers[0]["mask_png"]).size == pages.pages[0][0].size
    exact = [
        Counter(str(o["classifier"]["label"]) for o in answer["objects"])
        == Counter(t.label for t in truth)
        for answer, (_, truth, _) in zip(answers, pages.pages, strict=True)
    ]
    assert scores["exact"] == sum(exact)


def test_served_pipeline_scores_the_held_out_scenes(ts_client) -> None:
    scenes = held_out_scenes(4)
    assert [image.size for image, _, _ in scenes.pages] == [(64, 64)] * 4
    scores = score_pipeline(ts_client, scenes)
    assert scores["images"] == 4 and 0 <= scores["exact"] <= 4
    assert scores["objects"] == sum(len(truth) for _, truth, _ in scenes.pages) > 0
