"""The served segmenter mask equals the in-process handler's, at odd sizes (docs/api.md,
Segmentation): nothing between the client and the model (archive, frontend, batching with
other sizes, PNG, base64) changes a mask or an object.

The reference is the same handler class loaded in this process from the served checkpoint
(`in_process.InProcess`). The images are real digit scenes and pages cropped
or scaled to sizes that exercise every path of the handler: the card's size, smaller and
larger canvases (scale mapping and tiling with edge tiles) and odd widths and heights.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from imaging import decode_png, png
from in_process import InProcess
from PIL import Image

from handlers.contract import SEGMENTER
from handlers.segmenter import SegmenterHandler

pytestmark = pytest.mark.integration

#: (width, height) of each case, and the request's options.
CASES = [
    ((64, 64), {}),
    ((37, 53), {}),
    ((101, 67), {}),
    ((257, 129), {}),
    ((300, 170), {"object_size": 28}),
    ((96, 96), {"min_area": 1}),
]


@pytest.fixture(scope="module")
def in_process(checkpoint_root: Path) -> Iterator[InProcess]:
    threads = torch.get_num_threads()  # the handler sets its worker's thread count
    yield InProcess(SegmenterHandler, SEGMENTER, checkpoint_root / SEGMENTER / "1.0")
    torch.set_num_threads(threads)


def canvas(scene_png: bytes, size: tuple[int, int]) -> bytes:
    """The scene tiled over a canvas of `size` (digits of the training size, cut at the
    edges), so every case holds real digits."""
    scene = Image.open(io.BytesIO(scene_png)).convert("L")
    out = Image.new("L", size, 0)
    for x in range(0, size[0], scene.width):
        for y in range(0, size[1], scene.height):
            out.paste(scene, (x, y))
    return png(out)


@pytest.mark.parametrize(("size", "options"), CASES, ids=[f"{w}x{h}" for (w, h), _ in CASES])
def test_served_mask_equals_in_process(ts_client, in_process, scene, size, options) -> None:
    data = canvas(scene[0], size)
    served = ts_client.predict(data, SEGMENTER, **options)
    local = in_process.answer(data, **options)
    assert (served["width"], served["height"]) == size == (local["width"], local["height"])
    mask = np.asarray(decode_png(served["mask_png"]))
    assert mask.shape == (size[1], size[0])
    assert np.array_equal(mask, np.asarray(decode_png(local["mask_png"])))
    assert served["objects"] == local["objects"] and served["class_pixels"] == local["class_pixels"]
    assert served["objects"], "no digit found: the comparison proved little"


def test_masks_stay_equal_when_sizes_share_a_batch(ts_client, in_process, scene) -> None:
    """All cases at once, so the frontend batches different sizes together (batch 16)."""
    from concurrent.futures import ThreadPoolExecutor

    images = [(canvas(scene[0], size), options) for size, options in CASES]
    with ThreadPoolExecutor(len(images)) as pool:
        served = list(pool.map(lambda c: ts_client.predict(c[0], SEGMENTER, **c[1]), images))
    for (data, options), body in zip(images, served, strict=True):
        local = in_process.answer(data, **options)
        assert body["mask_png"] == local["mask_png"] and body["objects"] == local["objects"]
