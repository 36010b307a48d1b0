"""Metric accumulators against hand-counted values."""

from __future__ import annotations

import math

import pytest
import torch

from training.metrics import (
    ClassificationMetrics,
    ConfusionMatrix,
    MeanValue,
    SegmentationMetrics,
    TopKAccuracy,
    headline_metric,
    predict_labels,
    segmentation_scores,
)

# Rows are the truth, columns the prediction. Class 0 is the background; class 3 appears in
# neither prediction nor target.
#   class 1: TP 3, FP 1, FN 1 -> Dice 6/8, IoU 3/5;  class 2: perfect -> 1, 1
#   foreground: TP 3 + 2 = 5 (any digit predicted as any digit), FP 1, FN 1 -> 10/12
MATRIX = torch.tensor([[5, 1, 0, 0], [1, 3, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]])


def test_mean_value_is_weighted_by_count() -> None:
    mean = MeanValue()
    mean.update(1.0, n=3)
    mean.update(3.0, n=1)
    assert mean.compute() == pytest.approx(1.5)
    mean.reset()
    assert math.isnan(mean.compute())


def test_top_k_accuracy() -> None:
    logits = torch.tensor([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]])
    target = torch.tensor([2, 0, 0])
    top1, top2 = TopKAccuracy(1), TopKAccuracy(2)
    top1.update(logits, target)
    top2.update(logits, target)
    assert top1.compute() == pytest.approx(1 / 3)  # only the second is right
    assert top2.compute() == pytest.approx(2 / 3)  # the first's 2 is second-best
    big_k = TopKAccuracy(5)
    big_k.update(logits, target)
    assert big_k.compute() == 1.0  # k larger than the number of classes: everything counts


def test_confusion_matrix_precision_recall_and_ignore() -> None:
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(torch.tensor([0, 1, 1, 2, 0, 2]), torch.tensor([0, 1, 2, 2, 255, 1]))
    assert cm.matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 1, 1]]
    scores = cm.compute()
    assert scores["precision"] == pytest.approx([1.0, 0.5, 0.5])
    assert scores["recall"] == pytest.approx([1.0, 0.5, 0.5])


def test_precision_of_a_never_predicted_class_is_nan_not_zero() -> None:
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([0, 0]), torch.tensor([0, 1]))
    precision = cm.compute()["precision"]
    assert precision[0] == 0.5 and math.isnan(precision[1])


def test_segmentation_scores_skip_background_and_absent_classes() -> None:
    scores = segmentation_scores(MATRIX)
    assert scores["dice"][1] == pytest.approx(0.75)
    assert scores["iou"][1] == pytest.approx(0.6)
    assert scores["dice"][2] == 1.0
    assert math.isnan(scores["dice"][3]) and math.isnan(scores["iou"][3])
    assert scores["mean_dice"] == pytest.approx((0.75 + 1.0) / 2)
    assert scores["mean_iou"] == pytest.approx((0.6 + 1.0) / 2)
    assert scores["foreground_dice"] == pytest.approx(10 / 12)
    assert scores["pixel_accuracy"] == pytest.approx(10 / 12)  # 10 of 12 pixels right


def test_segmentation_metrics_from_logits_and_binary_logit() -> None:
    target = torch.tensor([[[0, 1], [2, 2]]])
    logits = torch.nn.functional.one_hot(torch.tensor([[[0, 1], [2, 0]]]), 3).movedim(-1, 1)
    metrics = SegmentationMetrics(3)
    metrics.update(logits.float(), target, loss=0.5)
    summary = metrics.summary()
    assert summary["loss"] == 0.5
    assert summary["mean_dice"] == pytest.approx((1.0 + 2 / 3) / 2)  # class 2: TP 1, FN 1
    binary = predict_labels(torch.tensor([[[[2.0, -1.0]]]]))
    assert binary.tolist() == [[[1, 0]]]


def test_classification_metrics_details() -> None:
    metrics = ClassificationMetrics(3)
    metrics.update(torch.eye(3)[[0, 1, 1]], torch.tensor([0, 1, 2]), loss=1.0)
    assert metrics.summary()["accuracy"] == pytest.approx(2 / 3)
    details = metrics.details(["a", "b", "c"])
    assert details["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]
    assert details["per_class"]["b"] == {"precision": 0.5, "recall": 1.0}


def test_all_reduce_without_a_process_group_is_a_no_op() -> None:
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([1]), torch.tensor([1]))
    cm.all_reduce()
    assert cm.matrix.tolist() == [[0, 0], [0, 1]]


def test_headline_metric_is_the_monitor_unless_that_is_the_loss() -> None:
    # A run may pick its best epoch by validation loss; reports and studies still show the
    # score people compare.
    assert headline_metric("loss", "classification") == "accuracy"
    assert headline_metric("loss", "segmentation") == "mean_dice"
    assert headline_metric("top5_accuracy", "classification") == "top5_accuracy"
    assert headline_metric("foreground_dice", "segmentation") == "foreground_dice"
