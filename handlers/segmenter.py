"""TorchServe handler for cvserve semantic segmenters (U-Net and friends).

`POST /predictions/{model}` answers with the class mask at the input's own size, per-class
pixel counts and the objects in it (docs/api.md, Segmentation):

0. the image is resized so its objects are as large as the training objects (the card's
   `input.object_size`; the request's `object_size` option in pixels, else found by the model
   in a coarse pass: `handlers.scaling`) and the network runs over it in overlapping tiles
   with Gaussian blending (`handlers.tiling`); an image no larger than a tile at scale 1,
   like the 64 px scenes of training, is one plain forward pass;
1. the network's logits (`C x h x w` at that scale) are mapped back to the ORIGINAL
   image size with `model_src.restore_to_original` (bilinear), THEN the argmax is taken.
   Resizing a low-resolution argmax with nearest neighbour would give blocky, shifted edges;
2. a binary model (one logit) uses sigmoid and the `threshold` option instead;
3. objects are connected components of non-background pixels with 8-connectivity (pixels
   touching at a corner belong together, so thin diagonal strokes of a digit stay one object),
   each labelled by its majority class, with `bbox` `[x0, y0, x1, y1]` (x1, y1 exclusive),
   `area`, and `score` = the mean probability of that class over the object's pixels; objects
   smaller than `min_area` are left out of `objects` (never out of the mask); sorted by x0.
   A component longer than the training objects (the card's `object_size` high end, at the
   scale the network ran at) in which two or more classes each hold at least `SPLIT_SHARE`
   of the pixels is touching objects, not one: it is split into one object per such class,
   each pixel going to the nearest pixel of those classes (`split_by_class`). A smaller
   share, or a component no longer than one object, is one object with a misread stroke.

Classes are processed one at a time at the original size, so memory grows with width x height
(a few float maps), not with width x height x classes.

TorchServe calls the module-level `handle(data, context)`; absolute imports only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from handlers.backends import ExportedForward
from handlers.base import DEFAULT_FORWARD_BATCH, ImageHandler, Prepared, module_entry_point
from handlers.metrics import HandlerMetrics
from handlers.png import mask_image, mask_overlay, png_base64
from handlers.request import (
    Limits,
    Option,
    RequestError,
    bool_option,
    float_option,
    int_option,
)
from handlers.scaling import (
    MAX_PASSES,
    MIN_PROBE_AREA,
    ObjectScale,
    coarse_scale,
    within_budget,
)
from handlers.tiling import sliding_window
from model_src import (
    ModelCard,
    Placement,
    build_eval_transform,
    restore_to_original,
    to_model_mode,
)

DEFAULT_MIN_AREA = 4
DEFAULT_THRESHOLD = 0.5
MAX_MIN_AREA = 1_000_000_000
SCORE_DIGITS = 4
# Logit given to the parts of the original that a center crop cut away (the model never saw
# them): background for a binary model, whose logit 0 would mean p = 0.5.
CROPPED_BINARY_LOGIT = -30.0


EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)
#: The share of a component's pixels that each of two classes must hold for the component to
#: be split into one object per class (touching digits of different classes). Below it, the
#: minority is a misread stroke of one object.
SPLIT_SHARE = 0.25
#: Longest tile side (pixels at the mapped scale; `handler: {tile_size: N}` overrides); at
#: least the card's input side. Tiles are fitted to the image (`handlers.tiling.fitted`): a
#: 1024 px side takes 4 tiles of 288 px. Neighbours overlap by a tenth of it (at least 16 px):
#: 32 px, more than the training objects' typical 20 px. Measured per pixel on 2 cores,
#: tiles of 256 to 320 px in batches were faster than 512 px or whole 1024 px images.
DEFAULT_TILE = 320
MIN_OVERLAP = 16
#: The `object_size` option's range, in pixels of the request's image.
MIN_OBJECT_SIZE, MAX_OBJECT_SIZE = 2.0, 10_000.0


@dataclass(frozen=True)
class ScaledImage(Prepared):
    """A prepared image at its first scale, and what further passes need."""

    upright: Image.Image | None = None  # in model mode, EXIF applied: re-scaled for a pass
    scale: float = 1.0
    auto: bool = True  # the scale is the model's to choose (no `object_size` option)


@dataclass(frozen=True)
class Segmented:
    """The logits of one image at the scale it was run at, and that scale's geometry."""

    logits: torch.Tensor  # K x h x w
    placement: Placement


@dataclass(frozen=True)
class ClassMap:
    """A mask at the original size and what is needed to score its objects."""

    labels: np.ndarray  # H x W int64 class indices
    probability: Callable[[int], np.ndarray]  # class index -> H x W probabilities
    scale: float = 1.0  # model pixels per original pixel (the scale the network ran at)


def upsample_argmax(logits: torch.Tensor, where: Placement) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-class logits `C x h x w` -> (class map `H x W`, log-sum-exp `H x W`) at the original
    size, one class at a time (memory: a few `H x W` maps, whatever C is).

    The class map equals `restore_to_original(logits, where).argmax(0)` (ties go to the lower
    class index, as with argmax); the log-sum-exp turns any class's restored logits into its
    softmax probability: `exp(logit_c - lse)`.
    """
    if is_identity(where):  # scale 1: the logits are already at the original size
        return argmax_planes(logits.float())
    best = restore_to_original(logits[0].float(), where)
    labels = torch.zeros(best.shape, dtype=torch.int64, device=best.device)
    total = torch.ones_like(best)  # running sum of exp(logit - best)
    for c in range(1, logits.shape[0]):
        up = restore_to_original(logits[c].float(), where)
        better = up > best
        new_best = torch.maximum(best, up)
        total = total * torch.exp(best - new_best) + torch.exp(up - new_best)
        labels[better] = c
        best = new_best
    return labels, best + torch.log(total)


def argmax_planes(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(logits.argmax(0), logits.logsumexp(0))` of `C x H x W` (ties to the lower class), a
    plane at a time: on a 1024 px page 0.05 s for the argmax against 0.3 s for torch's
    reduction over the outer dimension."""
    best = logits[0].clone()
    labels = torch.zeros(best.shape, dtype=torch.int64, device=best.device)
    for c in range(1, logits.shape[0]):
        labels[logits[c] > best] = c
        torch.maximum(best, logits[c], out=best)
    total = torch.zeros_like(best)
    for c in range(logits.shape[0]):
        total += torch.exp(logits[c] - best)
    return labels, best + torch.log(total)


def is_identity(where: Placement) -> bool:
    """True when the model saw the original pixels as they are (scale 1, no canvas)."""
    size = (where.orig_w, where.orig_h)
    return (where.scaled_w, where.scaled_h) == size == (where.canvas_w, where.canvas_h) and (
        where.offset_x,
        where.offset_y,
    ) == (0, 0)


Box = tuple[slice, slice]  # (rows, cols) of a bounding box


def find_objects(labels: np.ndarray) -> list[tuple[Box, np.ndarray]]:
    """Connected components (8-connectivity) of `labels > 0`: (bbox slices, pixel mask in bbox)."""
    components, _ = ndimage.label(labels > 0, structure=EIGHT_NEIGHBOURS)
    boxes = ndimage.find_objects(components)
    return [
        (box, components[box] == number)
        for number, box in enumerate(boxes, start=1)
        if box is not None
    ]


def scale_of(where: Placement) -> float:
    """Model pixels per original pixel (the longer side's ratio)."""
    return max(where.scaled_w, where.scaled_h) / max(where.orig_w, where.orig_h, 1)


def split_by_class(
    labels: np.ndarray, inside: np.ndarray, min_area: int, min_side: float = 0.0
) -> list[tuple[Box, np.ndarray]]:
    """The objects of one component: `inside` (a mask over `labels`, both the component's box)
    as it is, or, when it is longer than `min_side` and two or more classes each hold at least
    `SPLIT_SHARE` of it (and `min_area` pixels), one part per such class: every pixel goes to
    the class of the nearest pixel of those classes, and each part's connected components are
    objects. Returned as (box within `labels`, mask within that box).

    Why: digits that touch are one connected component, so one object whose box matches
    neither digit; the class map already tells them apart when their classes differ. Why the
    length: without it, single digits whose strokes the network half misread were split too
    (held-out digit pages: F1 0.933 with splits at any size, 0.971 with the length, 0.961
    never split)."""
    whole = (slice(0, inside.shape[0]), slice(0, inside.shape[1]))
    if max(inside.shape) <= min_side:
        return [(whole, inside)]
    votes = np.bincount(labels[inside], minlength=2)
    votes[0] = 0
    major = np.flatnonzero(votes >= max(min_area, SPLIT_SHARE * int(inside.sum()), 1))
    if len(major) < 2:
        return [(whole, inside)]
    seeds = np.where(inside & np.isin(labels, major), labels, 0)
    nearest = ndimage.distance_transform_edt(
        seeds == 0, return_distances=False, return_indices=True
    )
    owner = seeds[tuple(nearest)]
    parts = []
    for cls in major:
        parts.extend(find_objects(np.where(inside & (owner == cls), cls, 0)))
    return parts


class SegmenterHandler(ImageHandler):
    task = "segmentation"
    supports_explanations = False

    def setup(self) -> None:
        self.classes = list(self.card.classes)
        if len(self.classes) > 256:
            raise ValueError(
                f"{self.model_name} has {len(self.classes)} classes; a PNG mask holds at most 256"
            )
        if self.device.type == "cpu" and self.network is self.model:
            # Measured on 2 cores, one thread: the digit U-Net's forward took 0.08 s against
            # 0.10-0.12 s for 16 scenes of 64 px and 0.52 s against 0.68-0.75 s for 4 tiles
            # of 288 px in channels-last layout (the same weights and results).
            self.model = self.model.to(memory_format=torch.channels_last)
            self.network = self.model
        self.object_scale = ObjectScale.from_spec(self.card.input)
        self.tile = self.setting("tile_size", max(DEFAULT_TILE, *self.card.input.size))
        self.overlap = max(MIN_OVERLAP, self.tile // 10)
        # Pixels per forward pass: `forward_batch_size` images of the card's input size.
        height, width = self.card.input.size
        self.forward_pixels = self.setting("forward_batch_size", DEFAULT_FORWARD_BATCH) * (
            height * width
        )
        self._options: dict[str, Option] = {
            "overlay": bool_option(False),
            "min_area": int_option(DEFAULT_MIN_AREA, 0, MAX_MIN_AREA),
            # The typical size of the image's objects (longer side of their boxes, pixels);
            # absent: found automatically.
            "object_size": float_option(None, MIN_OBJECT_SIZE, MAX_OBJECT_SIZE),  # type: ignore[arg-type]
        }
        if self.card.is_binary:
            self._options["threshold"] = float_option(DEFAULT_THRESHOLD, 0.0, 1.0)

    def options(self, explain: bool) -> Mapping[str, Option]:
        return self._options

    # ---- in-process use (training's report, tools) ---------------------------------------------

    @classmethod
    def in_process(
        cls, model: torch.nn.Module, card: ModelCard, device: torch.device | str = "cpu"
    ) -> SegmenterHandler:
        """A handler around a model already in memory, without TorchServe: the trainer scores
        a segmenter exactly as it will be served (scale, tiles, objects)."""
        handler = cls()
        handler.model = model.eval()
        handler.network = handler.model
        handler.card = card
        handler.device = torch.device(device)
        handler.transform = build_eval_transform(card.input)
        handler.limits = Limits()
        handler.model_name, handler.version = card.name, card.version
        handler.setup()
        handler.initialized = True
        return handler

    def segment(
        self, image: Image.Image, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """One image -> (class-index mask at its size, API.md's `objects`), as served."""
        chosen = {name: option.default for name, option in self._options.items()}
        chosen.update(options or {})
        item = self.prepare(image, chosen)
        (output,) = self.predict_items([item], [chosen])
        class_map = self.class_map(output.logits, output.placement, chosen)
        return class_map.labels, self.objects(class_map, chosen["min_area"])

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """One batch of tiles. A compiled network serves the card's input size only: other
        tile shapes (whole small images, edge tiles) would make torch compile again during
        a request, so they take the eager model. An exported runtime decides for itself
        (a dynamic-size export takes them; `ExportedForward` sends the rest to eager)."""
        same = tuple(batch.shape[-2:]) == tuple(self.card.input.size)
        exported = isinstance(self.network, ExportedForward)
        return (self.network if same or exported else self.model)(batch).float()

    # ---- scale and tiles ----------------------------------------------------------------------

    def prepare(self, image: Image.Image, options: dict[str, Any] | None = None) -> ScaledImage:
        """The image at its first scale: the one `object_size` asks for, else the coarse pass's.

        Raises RequestError 422 when `object_size` would enlarge the image past the pixel
        limit (the message says which sizes are possible).
        """
        upright = to_model_mode(image, self.card.input.channels)
        width, height = upright.size
        wanted = (options or {}).get("object_size")
        if wanted is None:
            scale = coarse_scale(width, height)
        else:
            scale = self.object_scale.for_object_size(wanted)
            if scale > within_budget(scale, width, height, self.limits.max_pixels):
                smallest = self.object_scale.typical / within_budget(
                    scale, width, height, self.limits.max_pixels
                )
                raise RequestError(
                    422,
                    f"option 'object_size' {wanted:g} would enlarge this {width}x{height} image "
                    f"past the limit of {self.limits.max_pixels} pixels; use {smallest:.1f} or "
                    "more, or leave it out to find the size automatically",
                )
        tensor, where = self.transform.at_scale(upright, scale)
        # An image no larger than the training canvas is taken as it is, as in training: two
        # touching digits of a 64 px scene are one component, too large to be one digit,
        # and rescaling for it changed 2 of 60 held-out scenes.
        canvas_h, canvas_w = self.card.input.size
        auto = wanted is None and (width > canvas_w or height > canvas_h)
        return ScaledImage(image, tensor, where, upright, scale, auto)

    def predict_items(self, items: list[Prepared], options: list[dict[str, Any]]) -> list[Any]:
        """Every image in tiles at its own scale; automatic ones again at a better scale while
        their objects are out of the training range (`handlers.scaling`), at most
        `MAX_PASSES` passes. Each pass batches the tiles of all the images it runs."""
        scaled = [item for item in items if isinstance(item, ScaledImage)]
        assert len(scaled) == len(items), "the segmenter prepares ScaledImage items"
        results: list[Segmented | None] = [None] * len(items)
        current = {i: (item.tensor, item.placement, item.scale) for i, item in enumerate(scaled)}
        for done in range(1, MAX_PASSES + 1):
            pending = sorted(current)
            with torch.inference_mode():
                logits = sliding_window(
                    [current[i][0] for i in pending],
                    self.forward,
                    tile=self.tile,
                    overlap=self.overlap,
                    max_pixels=self.forward_pixels,
                    device=self.device,
                )
            again = {}
            for i, out in zip(pending, logits, strict=True):
                _, where, scale = current[i]
                results[i] = Segmented(out, where)
                item = scaled[i]
                if not item.auto or done == MAX_PASSES or item.upright is None:
                    continue
                new = self.object_scale.next_scale(scale, self.probe_sizes(out, options[i]))
                if new is None:
                    continue
                new = within_budget(new, where.orig_w, where.orig_h, self.limits.max_pixels)
                tensor, placed = self.transform.at_scale(item.upright, new)
                again[i] = (tensor, placed, new)
            if not again:
                break
            current = again
        return results

    def probe_sizes(self, logits: torch.Tensor, options: dict[str, Any]) -> list[float]:
        """The longer box sides of the objects in `logits` (pixels at its scale)."""
        if self.card.is_binary:
            foreground = torch.sigmoid(logits[0]) >= options.get("threshold", DEFAULT_THRESHOLD)
        else:
            foreground = logits[1:].amax(0) > logits[0]  # argmax > 0, without the argmax
        return [
            float(max(inside.shape))
            for _, inside in find_objects(foreground.to(torch.uint8).numpy())
            if inside.sum() >= MIN_PROBE_AREA
        ]

    def class_map(
        self, logits: torch.Tensor, where: Placement, options: dict[str, Any]
    ) -> ClassMap:
        """Model-canvas logits -> the class map at the original size (see the module doc)."""
        if self.card.is_binary:
            up = restore_to_original(logits[0].float(), where, fill=CROPPED_BINARY_LOGIT)
            foreground = torch.sigmoid(up)
            labels = (foreground >= options["threshold"]).to(torch.int64)

            def probability(c: int) -> np.ndarray:
                p = foreground if c == 1 else 1.0 - foreground
                return p.cpu().numpy()

            return ClassMap(labels.cpu().numpy(), probability, scale_of(where))
        labels, lse = upsample_argmax(logits, where)

        def probability(c: int) -> np.ndarray:
            up = (
                logits[c].float()
                if is_identity(where)
                else restore_to_original(logits[c].float(), where)
            )
            return torch.exp(up - lse).cpu().numpy()

        return ClassMap(labels.cpu().numpy(), probability, scale_of(where))

    def objects(self, class_map: ClassMap, min_area: int) -> list[dict[str, Any]]:
        """The connected components of the mask, touching objects of different classes split
        (`split_by_class`), as docs/api.md's `objects` entries."""
        labels = class_map.labels
        # 95 % of the training objects were no longer than this (in the image's pixels): a
        # component no longer is one object, whatever its classes say (a misread stroke).
        min_side = self.object_scale.high / class_map.scale
        found = []
        for component, whole in find_objects(labels):
            if int(whole.sum()) < min_area:
                continue
            rows0, cols0 = component[0].start, component[1].start
            parts = split_by_class(labels[component], whole, min_area, min_side)
            for (rows, cols), inside in parts:
                area = int(inside.sum())
                if area < min_area:
                    continue
                box = (
                    slice(rows0 + rows.start, rows0 + rows.stop),
                    slice(cols0 + cols.start, cols0 + cols.stop),
                )
                votes = np.bincount(labels[box][inside], minlength=len(self.classes))
                votes[0] = 0
                found.append((box, inside, area, int(votes.argmax())))
        probabilities: dict[int, np.ndarray] = {}
        result = []
        for box, inside, area, cls in found:
            if cls not in probabilities:
                probabilities[cls] = class_map.probability(cls)
            score = float(probabilities[cls][box][inside].mean())
            rows, cols = box
            result.append(
                {
                    "class": self.classes[cls],
                    "class_index": cls,
                    "bbox": [cols.start, rows.start, cols.stop, rows.stop],
                    "area": area,
                    "score": round(score, SCORE_DIGITS),
                }
            )
        result.sort(key=lambda o: (o["bbox"][0], o["bbox"][1]))
        return result

    def encode(
        self, item: Prepared, output: Segmented, options: dict[str, Any], explanation: Any
    ) -> dict[str, Any]:
        class_map = self.class_map(output.logits, output.placement, options)
        labels = class_map.labels
        counts = np.bincount(labels.ravel(), minlength=len(self.classes))
        body: dict[str, Any] = {
            "model": self.model_name,
            "version": self.version,
            "width": item.width,
            "height": item.height,
            "classes": list(self.classes),
            "mask_png": png_base64(mask_image(labels, len(self.classes))),
            "class_pixels": {self.classes[c]: int(n) for c, n in enumerate(counts) if n > 0},
            "objects": self.objects(class_map, options["min_area"]),
        }
        if options["overlay"]:
            overlay = mask_overlay(item.display_rgb(), labels, len(self.classes))
            body["overlay_png"] = png_base64(overlay)
        return body

    def record(self, body: dict[str, Any], metrics: HandlerMetrics) -> None:
        total = body["width"] * body["height"]
        background = body["class_pixels"].get(self.classes[0], 0)
        metrics.foreground((total - background) / total if total else 0.0)
        for obj in body["objects"]:
            metrics.label(obj["class"])


_service = SegmenterHandler()
handle = module_entry_point(_service)
