"""Losses: cross-entropy (classification and segmentation), soft Dice, and CE + Dice.

Every loss takes raw network outputs (logits), never probabilities or argmax masks: the
probabilities are computed here, once, in float32 (Dice sums over thousands of pixels lose
precision in fp16/bf16). Shapes follow PyTorch: `(N, C)` logits for classification,
`(N, C, H, W)` logits for segmentation with `(N, H, W)` integer class-index targets. A single
output channel (`C == 1`) is a binary model: sigmoid instead of softmax, target 0/1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import LossConfig

REDUCTIONS = ("mean", "none")


class CrossEntropyLoss(nn.Module):
    """Cross-entropy on logits for classification or segmentation.

    Args:
        class_weights: optional per-class weights, length C (multi-class only).
        ignore_index: target value excluded from the loss (e.g. 255 for "don't care" pixels).
        label_smoothing: in [0, 1); multi-class only.

    Shapes:
        logits `(N, C)` or `(N, C, H, W)`; target `(N,)` or `(N, H, W)` integer indices.
        With `C == 1` the loss is binary cross-entropy on the single logit (target 0 or 1).

    Raises:
        ValueError: in `__init__` for a smoothing outside [0, 1); in `forward` for label
            smoothing or class weights on a binary (one-logit) output, or mismatched shapes.

    Example:
        >>> loss = CrossEntropyLoss()
        >>> loss(torch.zeros(2, 3), torch.tensor([0, 2])).item()  # ln(3)
        1.0986...
    """

    def __init__(
        self,
        class_weights: list[float] | torch.Tensor | None = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        weights = None if class_weights is None else torch.as_tensor(class_weights).float()
        self.register_buffer("class_weights", weights, persistent=False)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _squeeze_channel(target, logits)
        if logits.shape[1] == 1:
            return self._binary(logits[:, 0], target)
        return F.cross_entropy(
            logits.float(),
            target.long(),
            weight=self.class_weights,
            ignore_index=-100 if self.ignore_index is None else self.ignore_index,
            label_smoothing=self.label_smoothing,
        )

    def _binary(self, logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.label_smoothing or self.class_weights is not None:
            raise ValueError(
                "label_smoothing and class_weights need a multi-class output; "
                "a one-logit (binary) model takes neither"
            )
        valid = torch.ones_like(target, dtype=torch.bool)
        if self.ignore_index is not None:
            valid = target != self.ignore_index
        per_pixel = F.binary_cross_entropy_with_logits(
            logit.float(), (target == 1).float(), reduction="none"
        )
        return (per_pixel * valid).sum() / valid.sum().clamp_min(1)


class SoftDiceLoss(nn.Module):
    """Soft Dice loss: `1 - Dice` between predicted probabilities and one-hot targets.

    Probabilities come from the logits: softmax over the channel axis for `C > 1`, sigmoid
    for `C == 1` (then treated as two channels, background `1 - p` and foreground `p`).
    Targets are one-hot encoded on the channel axis (dim 1), matching the probabilities.

    Reduction (why it is done this way): Dice is computed per sample and per class,

        dice[n, c] = (2 * sum_hw(p * t) + smooth) / (sum_hw(p) + sum_hw(t) + smooth),

    and the loss is `1 - mean(dice[n, c])` over the pairs whose class `c` occurs in sample
    `n`'s target. Per sample: a sample's term does not depend on the rest of the batch (summing
    over the batch first lets large objects drown small ones and changes with batch size).
    Present classes only: with a tiny `smooth`, a class absent from the target scores ~0
    whatever is predicted (with a big one, ~1), which is noise, not signal. Probability put on
    an absent class is still penalised through the present classes it is taken from (and
    through cross-entropy in `CEDiceLoss`). A batch where no class is present returns 0.

    Args:
        include_background: score channel 0 (the background) too. Set False when background
            dominates the image and would make Dice look good for free.
        ignore_index: target value whose pixels are excluded from both the prediction and
            the target sums (e.g. 255 for "don't care" borders).
        smooth: added to numerator and denominator; keep it small (1e-5): it only guards
            against 0/0 and should not change the value.
        reduction: "mean" (a scalar) or "none" (an `(N, C)` tensor of per-pair losses, NaN
            where the class is absent from the sample; the background column is dropped when
            `include_background=False`).

    Shapes:
        logits `(N, C, *spatial)` float logits; target `(N, *spatial)` or `(N, 1, *spatial)`
        integer class indices in `[0, C)` (or `{0, 1}` when `C == 1`), or `ignore_index`.

    Raises:
        ValueError: in `__init__` for a negative `smooth` or an unknown `reduction`; in
            `forward` for mismatched shapes or target values out of range.

    Example:
        >>> loss = SoftDiceLoss()
        >>> logits = torch.tensor([[[[9.0, -9.0]], [[-9.0, 9.0]]]])  # (1, 2, 1, 2): perfect
        >>> round(loss(logits, torch.tensor([[[0, 1]]])).item(), 3)
        0.0
    """

    def __init__(
        self,
        include_background: bool = True,
        ignore_index: int | None = None,
        smooth: float = 1e-5,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0 (1e-5 is a good default), got {smooth}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.include_background = include_background
        self.ignore_index = ignore_index
        self.smooth = smooth
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _squeeze_channel(target, logits)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            probs = probabilities(logits.float())
            onehot, valid = one_hot(target, probs.shape[1], self.ignore_index)
            probs, onehot = probs * valid, onehot * valid
            if not self.include_background:
                probs, onehot = probs[:, 1:], onehot[:, 1:]
            dice, present = self._per_pair(probs, onehot)
        return self._reduce(dice, present)

    def _per_pair(self, probs: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dims = tuple(range(2, probs.dim()))
        intersection = (probs * onehot).sum(dims)
        cardinality = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * intersection + self.smooth) / (cardinality + self.smooth).clamp_min(1e-12)
        return dice, onehot.sum(dims) > 0

    def _reduce(self, dice: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        loss = 1.0 - dice
        if self.reduction == "none":
            return loss.masked_fill(~present, float("nan"))
        if not present.any():
            return loss.sum() * 0.0  # keeps the graph; nothing to score in this batch
        return loss[present].mean()


class CEDiceLoss(nn.Module):
    """`ce_weight * cross-entropy + dice_weight * soft Dice` for segmentation.

    Cross-entropy gives every pixel a gradient from the first step; Dice counters the class
    imbalance of small objects on a large background. Arguments are those of
    `CrossEntropyLoss` and `SoftDiceLoss`; `ignore_index` applies to both.

    Shapes: logits `(N, C, H, W)`, target `(N, H, W)` class indices (see `SoftDiceLoss`).

    Raises:
        ValueError: in `__init__` for a negative weight or both weights 0.

    Example:
        >>> loss = CEDiceLoss(ce_weight=1.0, dice_weight=1.0)
        >>> loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long)).shape
        torch.Size([])
    """

    def __init__(
        self,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
        ignore_index: int | None = None,
        include_background: bool = True,
        smooth: float = 1e-5,
    ) -> None:
        super().__init__()
        if ce_weight < 0 or dice_weight < 0 or ce_weight + dice_weight == 0:
            raise ValueError(
                f"ce_weight and dice_weight must be >= 0 and not both 0, "
                f"got {ce_weight} and {dice_weight}"
            )
        self.ce_weight, self.dice_weight = ce_weight, dice_weight
        self.ce = CrossEntropyLoss(class_weights, ignore_index, label_smoothing)
        self.dice = SoftDiceLoss(include_background, ignore_index, smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce_weight * self.ce(logits, target) + self.dice_weight * self.dice(
            logits, target
        )


def build_loss(config: LossConfig, task: str) -> nn.Module:
    """The loss a config names; Dice losses are for segmentation only."""
    if task == "classification" and config.name != "ce":
        raise ValueError(f"loss.name {config.name!r} is for segmentation; use ce")
    if config.name == "ce":
        return CrossEntropyLoss(config.class_weights, config.ignore_index, config.label_smoothing)
    if config.name == "dice":
        return SoftDiceLoss(config.include_background, config.ignore_index, config.smooth)
    return CEDiceLoss(
        config.ce_weight,
        config.dice_weight,
        config.class_weights,
        config.label_smoothing,
        config.ignore_index,
        config.include_background,
        config.smooth,
    )


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """`(N, C, ...)` logits -> class probabilities on dim 1; one logit -> `[1 - p, p]`."""
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1.0 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def one_hot(
    target: torch.Tensor, num_classes: int, ignore_index: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(N, *spatial)` indices -> `(N, num_classes, *spatial)` one-hot on dim 1, and the
    `(N, 1, *spatial)` mask of pixels that count (not `ignore_index`)."""
    target = target.long()
    valid = torch.ones_like(target, dtype=torch.bool)
    if ignore_index is not None:
        valid = target != ignore_index
        target = target.masked_fill(~valid, 0)
    if target.numel() and (target.min() < 0 or target.max() >= num_classes):
        raise ValueError(
            f"target values must be class indices in [0, {num_classes}) "
            f"(or ignore_index), got min {int(target.min())} max {int(target.max())}"
        )
    encoded = F.one_hot(target, num_classes).movedim(-1, 1)  # classes onto the channel axis
    return encoded.float(), valid.unsqueeze(1)


def _squeeze_channel(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Accept `(N, 1, H, W)` targets as `(N, H, W)`; check the shapes agree."""
    if target.dim() == logits.dim() and target.shape[1] == 1:
        target = target[:, 0]
    if target.shape[0] != logits.shape[0] or target.shape[1:] != logits.shape[2:]:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}: "
            "expected logits (N, C, *spatial) and target (N, *spatial) class indices"
        )
    return target
