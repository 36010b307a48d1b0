"""Object-level scores (training/objects.py): matching at IoU >= 0.5, and the figures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.objects import Found, ObjectScores, box_iou, mask_objects, match


def test_box_iou_by_hand():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [10, 10, 20, 20]) == 0.0
    assert box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0


def test_each_object_matches_at_most_once_and_only_at_half_iou():
    truth = [Found("1", (0, 0, 10, 10)), Found("2", (20, 0, 30, 10))]
    predicted = [
        Found("1", (1, 0, 11, 10)),  # IoU 9/11 with truth 0
        Found("7", (0, 0, 10, 10)),  # IoU 1 with truth 0: wins it
        Found("2", (26, 0, 36, 10)),  # IoU 4/16 with truth 1: too low
    ]
    assert match(truth, predicted) == [(0, 1)]


def test_scores_by_hand():
    scores = ObjectScores(num_classes=3)
    truth = [Found("a", (0, 0, 4, 4)), Found("b", (10, 0, 14, 4)), Found("b", (0, 10, 4, 14))]
    predicted = [Found("a", (0, 0, 4, 4)), Found("a", (10, 0, 14, 4)), Found("b", (30, 30, 34, 34))]
    true_mask = np.zeros((40, 40), dtype=np.int64)
    true_mask[0:4, 0:4] = 1
    scores.update(truth, predicted, true_mask, true_mask)
    got = scores.compute()
    assert (got["objects"], got["found"], got["matched"], got["labels_right"]) == (3, 3, 2, 1)
    assert got["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert got["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert got["f1"] == pytest.approx(2 / 3, abs=1e-4)
    assert got["label_accuracy"] == 0.5
    assert got["mean_dice"] == 1.0  # class "a" perfect, "b" absent from both masks: skipped


def test_nothing_found_scores_zero_and_nothing_at_all_is_undefined():
    scores = ObjectScores(num_classes=2)
    scores.update([Found("x", (0, 0, 3, 3))], [])
    assert scores.compute()["f1"] == 0.0 and scores.compute()["recall"] == 0.0
    empty = ObjectScores(num_classes=2)
    empty.update([], [])
    assert math.isnan(empty.compute()["f1"])


def test_mask_objects_are_components_per_class():
    mask = np.zeros((10, 12), dtype=np.uint8)
    mask[1:3, 1:3] = 1
    mask[5, 5], mask[6, 6] = 2, 2  # diagonal neighbours: one object
    assert sorted(mask_objects(mask, ["bg", "a", "b"])) == [
        Found("a", (1, 1, 3, 3)),
        Found("b", (5, 5, 7, 7)),
    ]
