"""digit_pipeline's function nodes: prepare -> (segmenter) -> cut -> (classifier) -> aggregate.

TorchServe calls each function as `fn(data, context)` with a batch list (function nodes get
batch size 1, but the code handles any length) and once with `data=None` at load time, which
must return None. Between nodes, data travels as bytes: a node with one parent finds it under
`body`, a node with several parents under each parent's name; dict outputs arrive as JSON
bytes. The two model nodes are the digit_segmenter and digit_classifier archives.

Errors: `prepare` validates the request with the same request layer the models use and
answers bad input like a model does: the error object
`{"error": {"status": ..., "type": ..., "message": ...}}` with that status set on the request.
cvserve's frontend patch (frontend_patch/README.md) ends the workflow at the first node that
answers 4xx and sends the client that node's status and body, so the pipeline answers
400 / 413 / 422 with the models' own words. Anything else that fails is a server fault (500).

The classifier's input size is not needed here: cuts are sent at their own resolution and
the classifier's eval transform (built from its card) resizes them, exactly as for a direct
call, so whichever classifier version serves, its own preprocessing applies.

This file is the workflow archive's handler; `handlers/` is packed next to it (tools.archive),
so the absolute import below works in the worker as in the repository.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from handlers.base import reject
from handlers.png import png_bytes
from handlers.request import (
    IMAGE_KEYS,
    Limits,
    RequestError,
    UpstreamError,
    b64_image,
    decode_image,
    parse_request,
)
from model_src import to_model_mode

logger = logging.getLogger(__name__)

#: Margin around an object's box on each side, as a fraction of the box's longer side.
#: 0.2 frames a digit like MNIST does (a 20 px digit centred in 28 px).
CUT_MARGIN = 0.2
#: Cuts larger than this (pixels per side) are scaled down before they are sent: the
#: classifier resizes them to its own input anyway (every input size in the zoo is smaller),
#: and a full-resolution cut of a big photo would cost seconds of PNG encoding and megabytes.
MAX_CUT_SIDE = 512
#: Objects the pipeline classifies per request: all cut-outs go to the classifier in ONE
#: request, which its `max_images` must admit (tools.archive gives classifiers 128, a test
#: keeps them equal). A page of 100 digits is one request, with room for a segmenter that
#: splits a few; a scene with more objects is refused with a 413.
MAX_CUTS = 128
#: The pipeline takes no options: the segmenter and classifier run with their defaults.
PIPELINE_OPTIONS: dict[str, Any] = {}

Json = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Small pure helpers (imported by the tests: the same cuts as the server makes)


def load_json(raw: Any, what: str) -> Any:
    """Node input -> JSON value. Inputs are bytes between nodes; a dict passes through."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, bytes | bytearray):
        return json.loads(bytes(raw).decode("utf-8"))
    if isinstance(raw, str):
        return json.loads(raw)
    raise TypeError(f"node input {what!r} is {type(raw).__name__}, expected JSON bytes")


def square_box(bbox: Sequence[int], margin: float = CUT_MARGIN) -> tuple[int, int, int, int]:
    """`[x0, y0, x1, y1]` (x1/y1 exclusive) -> a square box centred on it, with a margin.

    The side is the longer side of the box plus `margin` of it on each side (at least 1 px);
    it may extend past the image, where the cut is padded with black (MNIST's background).
    """
    x0, y0, x1, y1 = (int(v) for v in bbox)
    longer = max(x1 - x0, y1 - y0, 1)
    side = max(1, math.ceil(longer * (1 + 2 * margin)))
    left = math.floor((x0 + x1 - side) / 2)
    top = math.floor((y0 + y1 - side) / 2)
    return left, top, left + side, top + side


def upright(image: Image.Image) -> Image.Image:
    """Apply EXIF orientation: the segmenter's boxes are in the upright image's pixels."""
    return ImageOps.exif_transpose(image) or image


def cut_objects(
    image: Image.Image,
    boxes: Sequence[Sequence[int]],
    margin: float = CUT_MARGIN,
    mask: np.ndarray | None = None,
) -> list[Image.Image]:
    """Square cut-outs of `image` (already upright) around each box, padded with black.

    With the segmenter's class map `mask` (H x W, 0 = background), each cut keeps only its
    object's pixels: everything else becomes transparent, which the classifier's own
    preprocessing (`model_src.to_model_mode`) composites over black. Measured on 60 held-out
    digit scenes with the trained defaults, cutting the box alone (textured background
    included) gave the classifier 19/60 scenes right against the segmenter's 52/60: an MNIST
    classifier has never seen a background.
    """
    if mask is not None and mask.shape != (image.height, image.width):
        logger.warning("mask %s does not match image %s: cutting boxes", mask.shape, image.size)
        mask = None
    if mask is not None:
        image = to_model_mode(image, 3)  # any mode -> RGB, 16-bit scaled, so alpha can be added
        foreground = Image.fromarray(np.where(mask != 0, 255, 0).astype(np.uint8), "L")
    elif image.mode == "P":
        # Palette index 0 is not necessarily black: pad in RGBA (transparent, then composited
        # over black by the classifier's mode conversion).
        image = image.convert("RGBA")
    cuts = []
    for box in boxes:
        square = square_box(box, margin)
        cut = image.crop(square)
        if mask is not None:
            cut.putalpha(_object_alpha(foreground, box, square))
        cuts.append(_bounded(cut))
    return cuts


def _object_alpha(
    foreground: Image.Image, box: Sequence[int], square: tuple[int, int, int, int]
) -> Image.Image:
    """Alpha for one cut: the foreground inside `box` (other objects excluded), grown by one
    pixel so anti-aliased stroke edges stay, on the cut's square canvas."""
    x0, y0, x1, y1 = (int(v) for v in box)
    alpha = Image.new("L", (square[2] - square[0], square[3] - square[1]), 0)
    alpha.paste(foreground.crop((x0, y0, x1, y1)), (x0 - square[0], y0 - square[1]))
    return alpha.filter(ImageFilter.MaxFilter(3))


def _bounded(cut: Image.Image, max_side: int = MAX_CUT_SIDE) -> Image.Image:
    """Scale a (square) cut down to at most `max_side` pixels per side, never up."""
    if max(cut.size) <= max_side:
        return cut
    if cut.mode == "1" or cut.mode.startswith("I;16"):
        cut = cut.convert("L" if cut.mode == "1" else "I")  # modes LANCZOS can resample
    elif cut.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        cut = cut.convert("RGBA" if cut.mode.endswith(("A", "a")) else "RGB")
    return cut.resize((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def forwarded_image(row: Mapping[str, Any], limits: Limits) -> str:
    """The request's image as the base64 the segmenter and `cut` receive: the ORIGINAL file.

    Forwarding the client's own bytes (not a re-decoded image) keeps the segmenter's answer
    equal to a direct call and keeps the size limits meaning what the client sent. Base64
    text is decoded by the request layer (data: URLs, URL-safe, wrapped lines) and re-encoded
    as plain base64, so later nodes read it with a plain decoder. Only called after
    `parse_request` accepted the request, so the shape is known to be valid.
    """
    key = next(k for k in IMAGE_KEYS if k in row)
    payload = row[key]
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if isinstance(payload, bytes | bytearray):
        if bytes(payload[:64]).lstrip()[:1] != b"{":
            return b64(bytes(payload))
        payload = json.loads(bytes(payload).decode("utf-8"))
    return b64(b64_image(payload["image"], "image", limits.max_bytes))


# ---------------------------------------------------------------------------------------------
# One request per node


def prepare_one(row: Mapping[str, Any], limits: Limits) -> Json:
    """Validate and decode like the models do; `{"image": b64}` to forward, or RequestError."""
    request = parse_request(row, PIPELINE_OPTIONS, limits)
    if isinstance(request, UpstreamError):
        raise RequestError(400, "the pipeline takes an image, not an error object")
    if request.several:
        raise RequestError(
            400,
            'the pipeline takes one image per request: send {"image": "<base64>"}, the '
            "file as the body, or multipart field `data`",
        )
    return {"image": forwarded_image(row, limits)}


def cut_one(prepared: Any, segmented: Any, limits: Limits) -> Json:
    """`{"images": [cut, ...]}` for the classifier (one per segmenter object, same order)."""
    raw = base64.b64decode(prepared["image"])
    image = upright(decode_image(raw, limits))
    boxes = [obj["bbox"] for obj in segmented.get("objects", [])]
    if not boxes:
        return {"images": []}
    if len(boxes) > MAX_CUTS:
        raise RequestError(
            413,
            f"the image holds {len(boxes)} objects, over the pipeline's limit of {MAX_CUTS} "
            "objects per request; split the image, or call the segmenter and the classifier "
            "directly",
        )
    mask_png = segmented.get("mask_png")
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(mask_png)))) if mask_png else None
    cuts = cut_objects(image, boxes, mask=mask)
    # Fast zlib level: the cut-outs only travel to the classifier inside the server.
    return {"images": [b64(png_bytes(cut, compress_level=1)) for cut in cuts]}


def aggregate_one(segmented: Any, classified: Any) -> Json:
    """docs/api.md's pipeline response from the segmenter's and the classifier's answers."""
    seg_objects = segmented.get("objects", [])
    predictions = classified.get("predictions", [])
    if len(predictions) != len(seg_objects):
        raise RuntimeError(
            f"classifier answered {len(predictions)} predictions for {len(seg_objects)} cuts"
        )
    objects = []
    for obj, pred in zip(seg_objects, predictions, strict=True):
        # Every entry is a prediction: the classifier answers an images list whole or with
        # one 4xx for all of it, which ends the workflow before this node.
        classifier = {"label": pred["label"], "score": pred["score"], "topk": pred["topk"]}
        objects.append(
            {
                "bbox": obj["bbox"],
                "area": obj["area"],
                "segmenter": {"label": obj["class"], "score": obj["score"]},
                "classifier": classifier,
                "agree": classifier["label"] == obj["class"],
            }
        )
    return {
        "width": segmented["width"],
        "height": segmented["height"],
        "mask_png": segmented["mask_png"],
        "objects": objects,
        "labels": [o["classifier"]["label"] for o in objects],
        "models": {
            "segmenter": {"name": segmented["model"], "version": segmented["version"]},
            "classifier": {"name": classified["model"], "version": classified["version"]},
        },
    }


# ---------------------------------------------------------------------------------------------
# TorchServe entry points (the DAG's function nodes; names must match spec.yaml)


def _limits() -> Limits:
    limits = Limits.from_config()
    limits.apply_to_pil()
    return limits


def _answer_each(
    rows: list[dict[str, Any]], context: Any, answer: Callable[[dict[str, Any]], Json]
) -> list[Json]:
    """`answer(row)` per request; a RequestError is answered like a model answers bad input:
    its error object, with its status set on that request (the patched frontend then ends
    that request's workflow here with this status and body; its neighbours go on)."""
    replies: list[Json] = []
    for idx, row in enumerate(rows):
        try:
            replies.append(answer(row))
        except RequestError as exc:
            replies.append(reject(context, idx, exc))
    return replies


def prepare(data: list[dict[str, Any]] | None, context: Any) -> list[Json] | None:
    """Start node: the client's request, exactly as a model would receive it."""
    if data is None:
        return None
    limits = _limits()
    return _answer_each(data, context, lambda row: prepare_one(row, limits))


def cut(data: list[dict[str, Any]] | None, context: Any) -> list[Json] | None:
    """Parents: prepare (the image) and segmenter (the objects)."""
    if data is None:
        return None
    limits = _limits()
    return _answer_each(
        data,
        context,
        lambda row: cut_one(
            load_json(row["prepare"], "prepare"), load_json(row["segmenter"], "segmenter"), limits
        ),
    )


def aggregate(data: list[dict[str, Any]] | None, context: Any) -> list[Json] | None:
    """Leaf: parents segmenter and classifier; its output is the HTTP response body."""
    if data is None:
        return None
    return [
        aggregate_one(
            load_json(row["segmenter"], "segmenter"), load_json(row["classifier"], "classifier")
        )
        for row in data
    ]
