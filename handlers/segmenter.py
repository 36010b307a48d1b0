"""TorchServe handler for cvserve semantic segmenters (U-Net and friends).

`POST /predictions/{model}` answers with the class mask at the input's own size, per-class
pixel counts and the objects in it (docs/api.md, Segmentation):

1. the network's logits (`C x h x w` on the model canvas) are mapped back to the ORIGINAL
   image size with `model_src.restore_to_original` (bilinear), THEN the argmax is taken.
   Resizing a low-resolution argmax with nearest neighbour would give blocky, shifted edges;
2. a binary model (one logit) uses sigmoid and the `threshold` option instead;
3. objects are connected components of non-background pixels with 8-connectivity (pixels
   touching at a corner belong together, so thin diagonal strokes of a digit stay one object),
   each labelled by its majority class, with `bbox` `[x0, y0, x1, y1]` (x1, y1 exclusive),
   `area`, and `score` = the mean probability of that class over the object's pixels; objects
   smaller than `min_area` are left out of `objects` (never out of the mask); sorted by x0.

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
from scipy import ndimage

from handlers.base import ImageHandler, Prepared, module_entry_point
from handlers.metrics import HandlerMetrics
from handlers.png import mask_image, mask_overlay, png_base64
from handlers.request import Option, bool_option, float_option, int_option
from model_src import Placement, restore_to_original

DEFAULT_MIN_AREA = 4
DEFAULT_THRESHOLD = 0.5
MAX_MIN_AREA = 1_000_000_000
SCORE_DIGITS = 4
# Logit given to the parts of the original that a center crop cut away (the model never saw
# them): background for a binary model, whose logit 0 would mean p = 0.5.
CROPPED_BINARY_LOGIT = -30.0


EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class ClassMap:
    """A mask at the original size and what is needed to score its objects."""

    labels: np.ndarray  # H x W int64 class indices
    probability: Callable[[int], np.ndarray]  # class index -> H x W probabilities


def upsample_argmax(logits: torch.Tensor, where: Placement) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-class logits `C x h x w` -> (class map `H x W`, log-sum-exp `H x W`) at the original
    size, one class at a time (memory: a few `H x W` maps, whatever C is).

    The class map equals `restore_to_original(logits, where).argmax(0)` (ties go to the lower
    class index, as with argmax); the log-sum-exp turns any class's restored logits into its
    softmax probability: `exp(logit_c - lse)`.
    """
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


def find_objects(labels: np.ndarray) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    """Connected components (8-connectivity) of `labels > 0`: (bbox slices, pixel mask in bbox)."""
    components, _ = ndimage.label(labels > 0, structure=EIGHT_NEIGHBOURS)
    boxes = ndimage.find_objects(components)
    return [
        (box, components[box] == number)
        for number, box in enumerate(boxes, start=1)
        if box is not None
    ]


class SegmenterHandler(ImageHandler):
    task = "segmentation"
    supports_explanations = False

    def setup(self) -> None:
        self.classes = list(self.card.classes)
        if len(self.classes) > 256:
            raise ValueError(
                f"{self.model_name} has {len(self.classes)} classes; a PNG mask holds at most 256"
            )
        self._options: dict[str, Option] = {
            "overlay": bool_option(False),
            "min_area": int_option(DEFAULT_MIN_AREA, 0, MAX_MIN_AREA),
        }
        if self.card.is_binary:
            self._options["threshold"] = float_option(DEFAULT_THRESHOLD, 0.0, 1.0)

    def options(self, explain: bool) -> Mapping[str, Option]:
        return self._options

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.network(batch).float()

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

            return ClassMap(labels.cpu().numpy(), probability)
        labels, lse = upsample_argmax(logits, where)

        def probability(c: int) -> np.ndarray:
            up = restore_to_original(logits[c].float(), where)
            return torch.exp(up - lse).cpu().numpy()

        return ClassMap(labels.cpu().numpy(), probability)

    def objects(self, class_map: ClassMap, min_area: int) -> list[dict[str, Any]]:
        """The connected components of the mask, as docs/api.md's `objects` entries."""
        labels = class_map.labels
        found = []
        for box, inside in find_objects(labels):
            area = int(inside.sum())
            if area < min_area:
                continue
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
        self, item: Prepared, output: torch.Tensor, options: dict[str, Any], explanation: Any
    ) -> dict[str, Any]:
        class_map = self.class_map(output, item.placement, options)
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
