"""Sliding-window inference (handlers/tiling.py) and the segmenter's use of it: tiles equal
one whole-image pass, blending leaves no seams, memory per forward pass stays bounded."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from test_handlers_support import (
    BLOB_CLASSES,
    BLOB_VALUES,
    BLOB_WIDTH,
    b64,
    decode_png,
    encode,
    make_context,
    make_segmenter,
    run_batch,
    train_blob_segmenter,
)

from handlers.segmenter import SegmenterHandler
from handlers.tiling import fitted, plan, sliding_window, starts, tiles_per_forward


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def blob_model():
    return train_blob_segmenter()


@pytest.mark.parametrize(
    ("length", "tile", "overlap"),
    [
        (64, 256, 32),
        (300, 64, 16),
        (1024, 256, 32),
        (1024, 320, 32),
        (257, 256, 0),
        (4000, 320, 32),
    ],
)
def test_windows_cover_the_axis_with_at_least_the_overlap(length, tile, overlap):
    side = fitted(length, tile, overlap)
    found = starts(length, tile, overlap)
    assert side <= tile and found[0] == 0 and found[-1] + side == length
    gaps = [b - a for a, b in itertools.pairwise(found)]
    assert all(side - gap >= overlap for gap in gaps)  # neighbours overlap enough
    fewest = -(-(length - overlap) // (tile - overlap))
    assert len(found) == 1 or len(found) == fewest  # no more windows than needed


def test_one_tile_is_exactly_the_whole_image_forward(blob_model):
    image = torch.randn(1, 70, 100)
    with torch.no_grad():
        (tiled,) = sliding_window([image], blob_model, tile=128, overlap=32, max_pixels=1 << 20)
        whole = blob_model(image[None])[0]
    assert torch.equal(tiled, whole)


def test_blending_of_many_tiles_equals_a_pointwise_model_everywhere():
    """A 1x1 convolution has no context: every tile predicts the same value for a pixel, so
    the Gaussian-weighted average must give the whole-image forward back exactly."""
    torch.manual_seed(0)
    pointwise = torch.nn.Conv2d(1, 3, kernel_size=1)
    image = torch.randn(1, 150, 210)
    with torch.no_grad():
        (tiled,) = sliding_window([image], pointwise, tile=64, overlap=16, max_pixels=64 * 64)
        whole = pointwise(image[None])[0]
    assert len(plan(0, 150, 210, 64, 16)) > 9
    assert torch.allclose(tiled, whole, atol=1e-5)


def scene(width: int, height: int, boxes: list[tuple[int, list[int]]], seed: int = 0):
    rng = np.random.default_rng(seed)
    canvas = rng.integers(0, 40, (height, width)).astype(np.uint8)
    for cls, (x0, y0, x1, y1) in boxes:
        canvas[y0:y1, x0:x1] = BLOB_VALUES[cls]
    return canvas


def test_tiled_mask_equals_the_whole_image_mask(blob_model):
    """Where both fit in memory, tiles (64 px, against a U-Net whose context is smaller than
    the overlap) give the whole-image mask."""
    boxes = [(1, [10, 12, 28, 30]), (2, [50, 40, 80, 58]), (1, [100, 5, 118, 40])]
    pixels = scene(160, 90, boxes)
    image = ((torch.from_numpy(pixels / 255.0).float() - 0.1307) / 0.3081)[None]
    with torch.no_grad():
        (tiled,) = sliding_window([image], blob_model, tile=64, overlap=32, max_pixels=64 * 64)
        whole = blob_model(image[None])[0]
    assert len(plan(0, 90, 160, 64, 32)) >= 6
    same = (tiled.argmax(0) == whole.argmax(0)).float().mean().item()
    assert same > 0.999, same
    assert set(np.unique(whole.argmax(0).numpy())) == {0, 1, 2}


def serve(folder, settings=None):
    context = make_context(folder, "blobs", model_config={"handler": settings or {}})
    handler = SegmenterHandler()
    handler.handle(None, context)
    return handler, context


@pytest.fixture(scope="module")
def blob_folder(tmp_path_factory, blob_model):
    folder = tmp_path_factory.mktemp("tiles")
    make_segmenter(folder, model=blob_model, classes=BLOB_CLASSES, base_width=BLOB_WIDTH)
    return folder


@pytest.mark.parametrize("cls", [1, 2])
def test_no_seam_across_a_tile_border(blob_folder, blob_model, cls):
    """A blob across the border of two 64 px tiles is one object, every pixel of it in the
    mask, as in the whole-image forward pass: the blended tiles leave no seam through it."""
    handler, context = serve(blob_folder, {"tile_size": 64})
    border = starts(200, 64, 16)[1] + 64 // 2  # the middle of the first two tiles' overlap
    box = [border - 7, 20, border + 7, 36]
    pixels = scene(200, 60, [(cls, box)])
    # The card's typical object size: scale 1, so the tiles are 64 px of the image itself.
    size = handler.object_scale.typical
    row = {"body": {"image": b64(encode_array(pixels)), "object_size": size}}
    (body,), (status,) = run_batch(handler, context, [row])
    assert status == 200 and len(plan(0, 60, 200, 64, 16)) > 1
    mask = np.asarray(decode_png(body["mask_png"]))
    x0, y0, x1, y1 = box
    # The model's own edges are soft at the corners; everything within the rim is found.
    assert (mask[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] > 0).all(), "the blob, on both sides"
    (obj,) = [o for o in body["objects"] if o["area"] > 50]
    assert obj["class"] == BLOB_CLASSES[cls]
    assert obj["bbox"] == pytest.approx(box, abs=1)
    image = ((torch.from_numpy(pixels / 255.0).float() - 0.1307) / 0.3081)[None, None]
    with torch.no_grad():
        whole = blob_model(image)[0].argmax(0).numpy()
    window = (slice(y0 - 3, y1 + 3), slice(x0 - 3, x1 + 3))
    agree = ((mask[window] > 0) == (whole[window] > 0)).mean()
    assert agree > 0.97, agree


def encode_array(pixels: np.ndarray) -> bytes:
    from PIL import Image

    return encode(Image.fromarray(pixels))


def test_tiles_per_forward_are_bounded_on_a_large_image(blob_folder, monkeypatch):
    """A 1500 x 1100 image at scale 1 is hundreds of 64 px tiles; no forward pass gets more
    than `forward_batch_size` tiles' worth of pixels."""
    handler, context = serve(blob_folder, {"tile_size": 64, "forward_batch_size": 3})
    batches = []
    original = handler.forward

    def counting(batch):
        batches.append(tuple(batch.shape))
        return original(batch)

    monkeypatch.setattr(handler, "forward", counting)
    pixels = scene(1500, 1100, [(1, [100, 100, 120, 120])])
    size = handler.object_scale.typical  # scale 1
    row = {"body": {"image": b64(encode_array(pixels)), "object_size": size}}
    (body,), (status,) = run_batch(handler, context, [row])
    assert status == 200 and (body["width"], body["height"]) == (1500, 1100)
    tiles = len(plan(0, 1100, 1500, 64, 16))
    assert tiles > 400
    assert sum(n for n, *_ in batches) == tiles
    assert max(n * h * w for n, _, h, w in batches) <= 3 * 64 * 64
    assert tiles_per_forward(64, 64, 3 * 64 * 64) == 3
