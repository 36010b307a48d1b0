"""Object-level scores of a segmenter or a pipeline: are the objects found, and named right?

Pixel scores (Dice) say little about a page of a hundred digits: a model that finds 90 of them
perfectly and merges the other ten into blobs scores high. So each true object (its class and
box) is matched to at most one predicted object, greedily by box IoU, and only at
IoU >= `IOU_THRESHOLD` (0.5, PASCAL VOC's rule). From the matches:

- precision = matched / predicted, recall = matched / true, F1 their harmonic mean;
- label accuracy = matched objects whose predicted label is the true one / matched;
- mean Dice, from the pooled pixel confusion matrix of the masks (`training.metrics`),
  over the non-background classes, and the foreground Dice (any object class vs background).

`ObjectScores` is an accumulator (update per image, compute at the end). The trainer's report
(`training.engine`) and `tools.eval_pipeline` (the served pipeline) both use it, so their
figures mean the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from .metrics import ConfusionMatrix, segmentation_scores

IOU_THRESHOLD = 0.5
Box = Sequence[int]  # x0, y0, x1, y1 (x1, y1 exclusive)


class Found(NamedTuple):
    """One object: its label (a class name) and box."""

    label: str
    bbox: tuple[int, int, int, int]


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two `[x0, y0, x1, y1]` boxes (0 when either is empty)."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(
    truth: Sequence[Found], predicted: Sequence[Found], threshold: float = IOU_THRESHOLD
) -> list[tuple[int, int]]:
    """Pairs `(true index, predicted index)`: greedy by decreasing IoU, each object at most
    once, only pairs with IoU >= `threshold`."""
    pairs = [
        (iou, i, j)
        for i, t in enumerate(truth)
        for j, p in enumerate(predicted)
        if (iou := box_iou(t.bbox, p.bbox)) >= threshold
    ]
    pairs.sort(key=lambda x: (-x[0], x[1], x[2]))
    used_t, used_p, result = set(), set(), []
    for _, i, j in pairs:
        if i not in used_t and j not in used_p:
            used_t.add(i)
            used_p.add(j)
            result.append((i, j))
    return sorted(result)


class ObjectScores:
    """Counts of true, predicted, matched and rightly labelled objects, and the mask confusion
    matrix (`num_classes` including the background, class 0)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        self.images = self.true = self.predicted = self.matched = self.right = 0
        self.pixels = ConfusionMatrix(self.num_classes)

    def update(
        self,
        truth: Sequence[Found],
        predicted: Sequence[Found],
        true_mask: np.ndarray | None = None,
        predicted_mask: np.ndarray | None = None,
    ) -> None:
        """One image: its true and predicted objects, and optionally both class-index masks."""
        pairs = match(truth, predicted)
        self.images += 1
        self.true += len(truth)
        self.predicted += len(predicted)
        self.matched += len(pairs)
        self.right += sum(truth[i].label == predicted[j].label for i, j in pairs)
        if true_mask is not None and predicted_mask is not None:
            self.pixels.update(
                torch.from_numpy(np.asarray(predicted_mask, dtype=np.int64)),
                torch.from_numpy(np.asarray(true_mask, dtype=np.int64)),
            )

    def compute(self) -> dict[str, Any]:
        precision = self.matched / self.predicted if self.predicted else math.nan
        recall = self.matched / self.true if self.true else math.nan
        f1 = (
            2 * precision * recall / (precision + recall)
            if self.matched and not math.isnan(precision + recall)
            else (0.0 if self.true or self.predicted else math.nan)
        )
        has_pixels = int(self.pixels.matrix.sum()) > 0
        pixel = segmentation_scores(self.pixels.matrix) if has_pixels else {}
        return {
            "images": self.images,
            "objects": self.true,
            "found": self.predicted,
            "matched": self.matched,
            "labels_right": self.right,
            "precision": _round(precision),
            "recall": _round(recall),
            "f1": _round(f1),
            "label_accuracy": _round(self.right / self.matched if self.matched else math.nan),
            "mean_dice": _round(pixel.get("mean_dice", math.nan)),
            "foreground_dice": _round(pixel.get("foreground_dice", math.nan)),
        }


def _round(value: float) -> float:
    return value if math.isnan(value) else round(value, 4)


def mask_objects(mask: np.ndarray, classes: Sequence[str]) -> list[Found]:
    """The true objects of a class-index mask: connected components (8-connectivity) of each
    non-background class, labelled with its class name (for datasets without a list of
    placed objects; touching objects of one class count as one)."""
    from scipy import ndimage

    found = []
    for c in range(1, len(classes)):
        components, _ = ndimage.label(mask == c, structure=np.ones((3, 3), dtype=bool))
        for box in ndimage.find_objects(components):
            if box is not None:
                rows, cols = box
                found.append(Found(classes[c], (cols.start, rows.start, cols.stop, rows.stop)))
    return found


def score_objects(
    items: Iterable[tuple[Any, list[Found], np.ndarray]],
    predict: Callable[[Any], tuple[list[Found], np.ndarray]],
    num_classes: int,
) -> dict[str, Any]:
    """`ObjectScores` over `(image, true objects, true mask)` items, `predict(image)` giving
    the predicted objects and mask."""
    scores = ObjectScores(num_classes)
    for image, truth, true_mask in items:
        predicted, predicted_mask = predict(image)
        scores.update(truth, predicted, true_mask, predicted_mask)
    return scores.compute()


#: Test items scored object by object in a segmenter's report (the scenes' test split is 500).
REPORT_LIMIT = 500


def segmenter_report(
    model: torch.nn.Module,
    card: Any,
    test: Any,
    seed: int,
    pages: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """report.json's `objects`: the segmenter served in-process (`handlers.segmenter`: scale,
    tiles, objects), scored on the test split and, with `pages` options, on held-out
    `digit_pages` of data seed `seed`. Labels are the segmenter's own (majority class)."""
    from handlers.segmenter import SegmenterHandler

    from .data import build_splits

    handler = SegmenterHandler.in_process(model, card, device)
    classes = list(card.classes)

    def predict(image: Any) -> tuple[list[Found], np.ndarray]:
        labels, objects = handler.segment(image)
        return [Found(o["class"], tuple(o["bbox"])) for o in objects], labels

    report = {"test": score_objects(_test_items(test, classes), predict, len(classes))}
    if pages is not None:
        splits = build_splits("digit_pages", seed=seed, **pages)
        report["pages"] = {
            "options": dict(pages),
            **score_objects(page_items(splits.test), predict, len(classes)),
        }
    return report


def page_items(dataset: Any, count: int | None = None) -> Iterable[tuple[Any, list[Found], Any]]:
    """`(image, placed digits, mask)` of a `digit_pages` or `digit_scenes` split: the truth is
    the list of placed digits, so touching digits still count as two."""
    for i in range(len(dataset) if count is None else min(count, len(dataset))):
        scene = dataset.page(i) if hasattr(dataset, "page") else dataset.scene(i)
        truth = [Found(str(d.label), tuple(d.bbox)) for d in scene.digits]
        yield scene.image, truth, np.asarray(scene.mask)


def _test_items(test: Any, classes: list[str]) -> Iterable[tuple[Any, list[Found], Any]]:
    if hasattr(test, "scene"):  # generated scenes know their digits
        yield from page_items(test, REPORT_LIMIT)
        return
    for i in range(min(REPORT_LIMIT, len(test))):
        image, mask = test[i]
        mask = np.asarray(mask)
        yield image, mask_objects(mask, classes), mask


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m training.objects checkpoints/digit_segmenter/1.0/model.pt [--pages 20]`:
    the object scores report.json gets, for a checkpoint trained before they existed."""
    import argparse
    import json

    from model_src import load_checkpoint

    from .data import build_splits

    parser = argparse.ArgumentParser(prog="python -m training.objects", description=main.__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--pages", type=int, default=20, help="held-out digit_pages (0: none)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, card = load_checkpoint(args.checkpoint)
    data = card.dataset
    options = data.get("options", {})
    test = build_splits(data["name"], seed=data.get("seed", 0), **options).test
    pages = {"n_test": args.pages} if args.pages else None
    report = segmenter_report(model, card, test, data.get("seed", 0), pages)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
