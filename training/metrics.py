"""Metrics as small accumulators: `update()` per batch, `compute()` at the end, `reset()`,
and `all_reduce()` to sum the raw counts across DDP processes before computing.

Every accumulator keeps integer counts or float sums (never per-batch averages), so summing
them across processes and batches gives exactly the value one process would compute on the
whole split. Segmentation scores come from one dataset-wide confusion matrix (pixels of all
images pooled, as in torchvision's references), not from a mean of per-image scores.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist

METRIC_NAMES = {
    "classification": ("loss", "accuracy", "top5_accuracy"),
    "segmentation": ("loss", "mean_dice", "mean_iou", "foreground_dice", "pixel_accuracy"),
}


def headline_metric(monitor: str, task: str) -> str:
    """The score to show and rank by: the monitored one, unless that is the loss (a run may
    pick its best epoch by the smooth validation loss, but people compare accuracy or Dice)."""
    return monitor if monitor != "loss" else METRIC_NAMES[task][1]


def all_reduce_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` in place across processes (no-op without an initialised process group)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        backend = dist.get_backend()
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else None
        work = tensor.to(device) if device is not None else tensor
        dist.all_reduce(work)
        if work is not tensor:
            tensor.copy_(work.cpu())
    return tensor


class MeanValue:
    """Weighted running mean of a scalar, e.g. the loss (weight = batch size)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.totals = torch.zeros(2, dtype=torch.float64)  # (sum, count)

    def update(self, value: float | torch.Tensor, n: int = 1) -> None:
        self.totals += torch.tensor([float(value) * n, n], dtype=torch.float64)

    def all_reduce(self) -> None:
        all_reduce_(self.totals)

    def compute(self) -> float:
        total, count = self.totals.tolist()
        return total / count if count else math.nan


class TopKAccuracy:
    """Fraction of samples whose target is among the `k` highest logits."""

    def __init__(self, k: int = 1) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.reset()

    def reset(self) -> None:
        self.counts = torch.zeros(2, dtype=torch.int64)  # (correct, total)

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """logits `(N, C)`, target `(N,)` class indices."""
        k = min(self.k, logits.shape[1])
        top = logits.detach().topk(k, dim=1).indices
        correct = (top == target.view(-1, 1)).any(dim=1).sum()
        self.counts += torch.tensor([int(correct), target.numel()])

    def all_reduce(self) -> None:
        all_reduce_(self.counts)

    def compute(self) -> float:
        correct, total = self.counts.tolist()
        return correct / total if total else math.nan


class ConfusionMatrix:
    """Counts `matrix[target, prediction]` over class indices (rows are the truth).

    `ignore_index` entries of the target are skipped. Works for class labels `(N,)` and for
    label maps `(N, H, W)` alike.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        if num_classes < 2:
            raise ValueError(f"a confusion matrix needs >= 2 classes, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        prediction, target = prediction.detach().reshape(-1), target.detach().reshape(-1)
        keep = (target >= 0) & (target < self.num_classes)
        if self.ignore_index is not None:
            keep &= target != self.ignore_index
        n = self.num_classes
        flat = target[keep].long() * n + prediction[keep].long()
        self.matrix += torch.bincount(flat, minlength=n * n).reshape(n, n).cpu()

    def all_reduce(self) -> None:
        all_reduce_(self.matrix)

    def compute(self) -> dict[str, Any]:
        """Per-class precision and recall (NaN where undefined) and the matrix itself."""
        m = self.matrix.double()
        tp = m.diag()
        return {
            "precision": _safe_div(tp, m.sum(0)).tolist(),
            "recall": _safe_div(tp, m.sum(1)).tolist(),
            "matrix": self.matrix.tolist(),
        }


def segmentation_scores(matrix: torch.Tensor) -> dict[str, Any]:
    """Dice and IoU per class from a confusion matrix (rows truth, columns prediction).

    Class 0 is the background. A class absent from both prediction and target has no score
    (NaN) and is skipped by the means, which also leave out the background (it is most of
    every image and would make any model look good). `foreground_dice` is the binary Dice of
    "any non-background class" against background: whether the objects were found at all.
    """
    m = matrix.double()
    tp = m.diag()
    fp, fn = m.sum(0) - tp, m.sum(1) - tp
    dice = _safe_div(2 * tp, 2 * tp + fp + fn)
    iou = _safe_div(tp, tp + fp + fn)
    fg_tp = m[1:, 1:].sum()
    fg_errors = m[0, 1:].sum() + m[1:, 0].sum()
    return {
        "mean_dice": _nanmean(dice[1:]),
        "mean_iou": _nanmean(iou[1:]),
        "foreground_dice": _safe_div(2 * fg_tp, 2 * fg_tp + fg_errors).item(),
        "pixel_accuracy": _safe_div(tp.sum(), m.sum()).item(),
        "dice": dice.tolist(),
        "iou": iou.tolist(),
    }


class ClassificationMetrics:
    """Loss, accuracy, top-5 accuracy and the confusion matrix of a classifier."""

    task = "classification"

    def __init__(self, num_classes: int) -> None:
        self.loss = MeanValue()
        self.top1 = TopKAccuracy(1)
        self.top5 = TopKAccuracy(5)
        self.confusion = ConfusionMatrix(num_classes)
        self.parts = (self.loss, self.top1, self.top5, self.confusion)

    def update(self, logits: torch.Tensor, target: torch.Tensor, loss: float) -> None:
        logits, target = logits.detach().float().cpu(), target.detach().cpu()
        self.loss.update(loss, target.shape[0])
        self.top1.update(logits, target)
        self.top5.update(logits, target)
        self.confusion.update(logits.argmax(1), target)

    def summary(self) -> dict[str, float]:
        """The scalar metrics (what the monitor, metrics.csv and the card use)."""
        return {
            "loss": self.loss.compute(),
            "accuracy": self.top1.compute(),
            "top5_accuracy": self.top5.compute(),
        }

    def details(self, classes: list[str]) -> dict[str, Any]:
        """Per-class precision/recall and the confusion matrix (for report.json)."""
        scores = self.confusion.compute()
        return {
            "per_class": {
                name: {"precision": p, "recall": r}
                for name, p, r in zip(classes, scores["precision"], scores["recall"], strict=True)
            },
            "confusion_matrix": scores["matrix"],
        }

    def reset(self) -> None:
        for part in self.parts:
            part.reset()

    def all_reduce(self) -> None:
        for part in self.parts:
            part.all_reduce()


class SegmentationMetrics:
    """Loss and per-class Dice/IoU of a segmenter from a pixel confusion matrix.

    `num_classes` counts the background; a binary model (one logit) has 2 classes and its
    prediction is `logit > 0`.
    """

    task = "segmentation"

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        self.loss = MeanValue()
        self.confusion = ConfusionMatrix(num_classes, ignore_index)
        self.parts = (self.loss, self.confusion)

    def update(self, logits: torch.Tensor, target: torch.Tensor, loss: float) -> None:
        logits, target = logits.detach(), target.detach()
        if target.dim() == logits.dim():
            target = target[:, 0]
        self.loss.update(loss, target.shape[0])
        self.confusion.update(predict_labels(logits).cpu(), target.cpu())

    def summary(self) -> dict[str, float]:
        scores = segmentation_scores(self.confusion.matrix)
        return {"loss": self.loss.compute(), **{k: scores[k] for k in METRIC_NAMES[self.task][1:]}}

    def details(self, classes: list[str]) -> dict[str, Any]:
        scores = segmentation_scores(self.confusion.matrix)
        return {
            "per_class": {
                name: {"dice": d, "iou": i}
                for name, d, i in zip(classes, scores["dice"], scores["iou"], strict=True)
            }
        }

    def reset(self) -> None:
        for part in self.parts:
            part.reset()

    def all_reduce(self) -> None:
        for part in self.parts:
            part.all_reduce()


def build_metrics(
    task: str, num_classes: int, ignore_index: int | None = None
) -> ClassificationMetrics | SegmentationMetrics:
    """The metric set of a task; `num_classes` is the number of class names."""
    if task == "classification":
        return ClassificationMetrics(num_classes)
    return SegmentationMetrics(num_classes, ignore_index)


def predict_labels(logits: torch.Tensor) -> torch.Tensor:
    """`(N, C, ...)` logits -> `(N, ...)` class indices; one logit -> `logit > 0`."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(1)


def _safe_div(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """Elementwise ratio, NaN where the denominator is 0 (an undefined score, not 0 or 1)."""
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), math.nan)


def _nanmean(values: torch.Tensor) -> float:
    kept = values[~values.isnan()]
    return kept.mean().item() if kept.numel() else math.nan
