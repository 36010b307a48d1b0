"""The workflow's function nodes called directly (no server): load-time call, errors, cuts."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from imaging import png
from PIL import Image
from ts.context import Context, RequestProcessor

from handlers.request import Limits, RequestError, parse_request
from model_src import to_model_mode


def node_context(rows: int) -> Context:
    """The worker context TorchServe gives a function node, for a batch of `rows`."""
    context = Context("digit_pipeline__prepare", ".", {}, rows, None, "0.12.0")
    context.request_processor = [RequestProcessor({}) for _ in range(rows)]
    return context


def test_load_time_call_returns_none(pipeline_module) -> None:
    for node in (pipeline_module.prepare, pipeline_module.cut, pipeline_module.aggregate):
        assert node(None, None) is None


def test_prepare_forwards_the_original_file(pipeline_module, scene) -> None:
    (out,) = pipeline_module.prepare([{"body": scene[0]}], node_context(1))
    assert set(out) == {"image"}
    assert base64.b64decode(out["image"]) == scene[0]


def test_prepare_error_is_the_models_error(pipeline_module, garbage, scene) -> None:
    """The bad request gets the models' status and error object; its neighbour is untouched
    (the patched frontend ends that request's workflow at this node with this status)."""
    context = node_context(2)
    bad, good = pipeline_module.prepare([{"body": garbage}, {"body": scene[0]}], context)
    with pytest.raises(RequestError) as direct:
        parse_request({"body": garbage}, {}, Limits())
    assert bad == direct.value.to_body()
    assert context.get_response_status(0)[0] == direct.value.status == 400
    assert context.get_response_status(1)[0] == 200
    assert set(good) == {"image"}


def test_no_objects_means_no_cuts(pipeline_module, blank_png) -> None:
    (prepared,) = pipeline_module.prepare([{"body": blank_png}], node_context(1))
    segmented = {"objects": [], "width": 64, "height": 64}
    out = pipeline_module.cut(
        [{"prepare": json.dumps(prepared).encode(), "segmenter": json.dumps(segmented).encode()}],
        None,
    )
    assert out == [{"images": []}]


@pytest.mark.parametrize(
    ("bbox", "box"),
    [
        ([10, 10, 30, 30], (6, 6, 34, 34)),  # 20 px + 20% each side = 28 px (MNIST framing)
        ([0, 0, 10, 20], (-9, -4, 19, 24)),  # tall box: square on the longer side, centred
        ([5, 5, 6, 6], (4, 4, 6, 6)),  # a 1 px object still gets a margin
    ],
)
def test_square_box(pipeline_module, bbox, box) -> None:
    got = pipeline_module.square_box(bbox)
    assert got == box
    assert got[2] - got[0] == got[3] - got[1]


def test_cuts_pad_with_black_and_keep_mode(pipeline_module) -> None:
    image = Image.new("L", (20, 20), 255)
    (cut,) = pipeline_module.cut_objects(image, [[0, 0, 20, 20]])
    assert cut.size == (28, 28) and cut.mode == "L"
    assert cut.getpixel((0, 0)) == 0 and cut.getpixel((14, 14)) == 255
    cmyk = Image.new("CMYK", (8, 8))  # PNG cannot hold CMYK: the cut becomes RGB
    assert Image.open(io.BytesIO(pipeline_module.png_bytes(cmyk))).mode == "RGB"
    wide = Image.open(io.BytesIO(png(Image.new("I;16", (8, 8), 40000))))
    assert Image.open(io.BytesIO(pipeline_module.png_bytes(wide))).getpixel((0, 0)) == 40000


def test_big_cuts_are_scaled_down(pipeline_module) -> None:
    """A cut of a big photo is bounded (the classifier resizes to its own input anyway)."""
    image = Image.new("RGB", (2000, 1500), (200, 10, 10))
    (cut,) = pipeline_module.cut_objects(image, [[100, 100, 1900, 1400]])
    side = pipeline_module.MAX_CUT_SIDE
    assert cut.size == (side, side) and cut.mode == "RGB"
    assert cut.getpixel((side // 2, side // 2)) == (200, 10, 10)


def test_cuts_keep_only_the_objects_pixels(pipeline_module) -> None:
    """With the segmenter's mask, a cut is the object on black: the textured background and
    neighbouring objects are gone (an MNIST classifier has never seen a background)."""
    image = Image.new("L", (40, 20), 90)  # grey "texture" everywhere
    image.paste(255, (5, 5, 10, 15))  # the object: a bright bar
    image.paste(200, (30, 5, 35, 15))  # another object, outside this box
    mask = np.zeros((20, 40), dtype=np.uint8)
    mask[5:15, 5:10] = 2
    mask[5:15, 30:35] = 3
    (cut,) = pipeline_module.cut_objects(image, [[5, 5, 10, 15]], mask=mask)
    flat = to_model_mode(cut, 1)  # what the classifier's preprocessing makes of it
    values = np.asarray(flat)
    assert values.max() == 255 and values.min() == 0
    # Background pixels more than one pixel from the object are black.
    assert values[0, 0] == 0 and values[-1, -1] == 0
    assert set(np.unique(values).tolist()) <= {0, 90, 255}  # 90 only on the 1-px rim


def test_more_objects_than_max_cuts_is_a_413(pipeline_module, blank_png) -> None:
    (prepared,) = pipeline_module.prepare([{"body": blank_png}], node_context(1))
    count = pipeline_module.MAX_CUTS + 1
    segmented = {"objects": [{"bbox": [0, 0, 2, 2]}] * count, "width": 64, "height": 64}
    context = node_context(1)
    (out,) = pipeline_module.cut(
        [{"prepare": json.dumps(prepared).encode(), "segmenter": json.dumps(segmented).encode()}],
        context,
    )
    assert out["error"]["status"] == 413 == context.get_response_status(0)[0]
    assert f"holds {count} objects, over the pipeline's limit of 100" in out["error"]["message"]
