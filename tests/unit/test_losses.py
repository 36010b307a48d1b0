"""Losses against hand-computed values, including the classic soft-Dice bugs.

Probabilities are chosen first and turned into logits with `log` (softmax(log p) = p), so
every expected number below can be checked with a pocket calculator.
"""

from __future__ import annotations

import math

import pytest
import torch

from training.config import LossConfig
from training.losses import (
    CEDiceLoss,
    CrossEntropyLoss,
    SoftDiceLoss,
    build_loss,
    one_hot,
)

# Sample A: 1 x 4 pixels, target [0, 0, 1, 1], P(class 1) = [0.1, 0.2, 0.7, 0.6].
#   class 1: I = 1.3, sum p = 1.6, sum t = 2 -> dice = 2.6 / 3.6
#   class 0: I = 1.7, sum p = 2.4, sum t = 2 -> dice = 3.4 / 4.4
P_A = [0.1, 0.2, 0.7, 0.6]
T_A = [0, 0, 1, 1]
DICE_A1, DICE_A0 = 2.6 / 3.6, 3.4 / 4.4
# Sample B: target all background, P(class 1) = 0.1 everywhere.
#   class 0: I = 3.6, sum p = 3.6, sum t = 4 -> dice = 7.2 / 7.6; class 1 absent: not scored.
P_B = [0.1, 0.1, 0.1, 0.1]
T_B = [0, 0, 0, 0]
DICE_B0 = 7.2 / 7.6


def two_class_logits(*p_fg: list[float]) -> torch.Tensor:
    """(N, 2, 1, W) logits whose softmax is [1 - p, p] for each sample's p list."""
    p = torch.tensor(p_fg, dtype=torch.float64).unsqueeze(1)  # (N, 1, W)
    probs = torch.stack([1 - p, p], dim=1)  # (N, 2, 1, W)
    return probs.log().float()


def targets(*rows: list[int]) -> torch.Tensor:
    return torch.tensor(rows).unsqueeze(1)  # (N, 1, W) -> (N, H=1, W)


def test_dice_matches_hand_computed_value() -> None:
    loss = SoftDiceLoss(smooth=0.0)(two_class_logits(P_A), targets(T_A))
    assert loss.item() == pytest.approx(1 - (DICE_A0 + DICE_A1) / 2, abs=1e-6)


def test_dice_without_background_scores_foreground_only() -> None:
    loss = SoftDiceLoss(include_background=False, smooth=0.0)
    assert loss(two_class_logits(P_A), targets(T_A)).item() == pytest.approx(1 - DICE_A1, abs=1e-6)


def test_binary_one_logit_equals_two_channel_softmax() -> None:
    p = torch.tensor(P_A)
    one_logit = (p / (1 - p)).log().view(1, 1, 1, 4)  # sigmoid(logit) = p
    for include_background in (True, False):
        loss = SoftDiceLoss(include_background=include_background, smooth=0.0)
        assert loss(one_logit, targets(T_A)).item() == pytest.approx(
            loss(two_class_logits(P_A), targets(T_A)).item(), abs=1e-6
        )


def test_dice_is_per_sample_not_summed_over_the_batch() -> None:
    """Bug: summing intersections over the batch before the ratio makes a sample's loss
    depend on its neighbours (and on the batch size)."""
    loss = SoftDiceLoss(smooth=0.0)
    alone = loss(two_class_logits(P_A), targets(T_A))
    twice = loss(two_class_logits(P_A, P_A), targets(T_A, T_A))
    assert twice.item() == pytest.approx(alone.item(), abs=1e-6)
    mixed = loss(two_class_logits(P_A, P_B), targets(T_A, T_B)).item()
    assert mixed == pytest.approx(1 - (DICE_A0 + DICE_A1 + DICE_B0) / 3, abs=1e-6)
    # The batch-summed value would be 1 - mean(10.6 / 12, 2.6 / 4) = 0.2333...
    assert mixed != pytest.approx(1 - (10.6 / 12 + 2.6 / 4) / 2, abs=1e-3)


def test_dice_applies_softmax_to_logits() -> None:
    """Bug: treating logits as probabilities. Softmax is shift-invariant; raw logits are not."""
    logits = torch.tensor([[[[2.0, 1.0, -1.0]], [[-1.0, 0.5, 3.0]]]])  # (1, 2, 1, 3)
    target = torch.tensor([[[0, 0, 1]]])
    loss = SoftDiceLoss(smooth=0.0)
    p = torch.softmax(logits, dim=1)[0, :, 0]  # (2, 3)
    d0 = 2 * (p[0, 0] + p[0, 1]) / (p[0].sum() + 2)
    d1 = 2 * p[1, 2] / (p[1].sum() + 1)
    expected = 1 - (d0 + d1).item() / 2
    assert loss(logits, target).item() == pytest.approx(expected, abs=1e-6)
    assert loss(logits + 5.0, target).item() == pytest.approx(expected, abs=1e-6)


def test_one_hot_puts_classes_on_the_channel_axis() -> None:
    """Bug: F.one_hot appends the class axis last; viewing it as (N, C, H, W) scrambles it."""
    target = torch.tensor([[[0, 1, 2], [2, 2, 0]]])  # (1, 2, 3): H != W != C on purpose
    encoded, valid = one_hot(target, 3)
    assert encoded.shape == (1, 3, 2, 3)
    for c in range(3):
        assert torch.equal(encoded[0, c], (target[0] == c).float())
    assert valid.shape == (1, 1, 2, 3) and valid.all()


def test_perfect_prediction_gives_zero_even_with_an_absent_class() -> None:
    target = torch.tensor([[[0, 1, 1, 0]]])
    logits = one_hot(target, 3)[0] * 40.0 - 20.0  # class 2 never present, never predicted
    assert SoftDiceLoss()(logits, target).item() == pytest.approx(0.0, abs=1e-6)


def test_empty_classes_are_not_scored() -> None:
    """Bug: scoring a class absent from the target as 0 (tiny smooth) or 1 (large smooth)."""
    probs = torch.tensor([[0.9, 0.8, 0.3, 0.4], [0.1, 0.2, 0.7, 0.6], [1e-6] * 4])
    logits = probs.log().view(1, 3, 1, 4)  # class 2 absent from the target
    loss = SoftDiceLoss(reduction="none")(logits, targets(T_A))
    assert math.isnan(loss[0, 2].item())
    mean = SoftDiceLoss()(logits, targets(T_A)).item()
    assert mean == pytest.approx(1 - (DICE_A0 + DICE_A1) / 2, abs=1e-4)


def test_ignore_index_pixels_leave_both_sums() -> None:
    logits = two_class_logits([0.1, 0.7, 0.99, 0.01])
    target = torch.tensor([[[0, 1, 255, 255]]])
    # Only pixels 0 and 1 count: class 0: I = 0.9, sum p = 1.2, t = 1 -> 1.8 / 2.2;
    # class 1: I = 0.7, sum p = 0.8, t = 1 -> 1.4 / 1.8.
    expected = 1 - (1.8 / 2.2 + 1.4 / 1.8) / 2
    loss = SoftDiceLoss(ignore_index=255, smooth=0.0)(logits, target)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_a_batch_with_nothing_to_score_returns_zero_with_a_graph() -> None:
    logits = torch.zeros(1, 2, 1, 2, requires_grad=True)
    loss = SoftDiceLoss(include_background=False)(logits, torch.zeros(1, 1, 2, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_dice_is_float32_under_autocast() -> None:
    logits = two_class_logits(P_A).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = SoftDiceLoss()(logits, targets(T_A))
    assert loss.dtype == torch.float32


def test_dice_gradients_are_finite() -> None:
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    target = torch.randint(0, 4, (2, 8, 8))
    CEDiceLoss()(logits, target).backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: SoftDiceLoss(smooth=-1.0), "smooth"),
        (lambda: SoftDiceLoss(reduction="sum"), "reduction"),
        (lambda: CEDiceLoss(ce_weight=0.0, dice_weight=0.0), "not both 0"),
        (lambda: CEDiceLoss(ce_weight=-1.0), ">= 0"),
        (lambda: CrossEntropyLoss(label_smoothing=1.0), "label_smoothing"),
    ],
)
def test_invalid_options_fail_in_init(factory, message) -> None:
    with pytest.raises(ValueError, match=message):
        factory()


def test_forward_rejects_bad_shapes_and_labels() -> None:
    with pytest.raises(ValueError, match="does not match"):
        SoftDiceLoss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="class indices"):
        SoftDiceLoss()(torch.zeros(1, 2, 1, 2), torch.tensor([[[0, 2]]]))
    with pytest.raises(ValueError, match="binary"):
        CrossEntropyLoss(label_smoothing=0.1)(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2))


def test_cross_entropy_values() -> None:
    assert CrossEntropyLoss()(torch.zeros(2, 3), torch.tensor([0, 2])).item() == pytest.approx(
        math.log(3)
    )
    # Binary: BCE of logit 0 is ln 2 per pixel; the ignored pixel does not count.
    logit = torch.tensor([[[[0.0, 0.0, 50.0]]]])
    loss = CrossEntropyLoss(ignore_index=255)(logit, torch.tensor([[[1, 0, 255]]]))
    assert loss.item() == pytest.approx(math.log(2))


def test_ce_dice_is_the_weighted_sum() -> None:
    logits, target = torch.randn(2, 3, 5, 5), torch.randint(0, 3, (2, 5, 5))
    ce = CrossEntropyLoss()(logits, target)
    dice = SoftDiceLoss()(logits, target)
    combined = CEDiceLoss(ce_weight=0.5, dice_weight=2.0)(logits, target)
    assert combined.item() == pytest.approx(0.5 * ce.item() + 2.0 * dice.item(), rel=1e-6)


def test_build_loss_by_name_and_task() -> None:
    assert isinstance(build_loss(LossConfig(name="ce"), "classification"), CrossEntropyLoss)
    assert isinstance(build_loss(LossConfig(name="ce_dice"), "segmentation"), CEDiceLoss)
    with pytest.raises(ValueError, match="segmentation"):
        build_loss(LossConfig(name="dice"), "classification")
