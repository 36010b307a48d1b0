"""`digits` with `drop_classes` / `keep_fraction`: an imbalanced TRAIN split, seeded, with
val and test untouched (imbalance studies compare per-class recall on balanced test data)."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import build_splits, dataset_options


def test_chosen_classes_keep_their_fraction_of_train_only() -> None:
    full = build_splits("digits", seed=0)
    cut = build_splits("digits", seed=0, drop_classes=[3, 8], keep_fraction=0.1)
    expected = [40 if d in (3, 8) else 400 for d in range(10)]
    assert np.bincount(cut.train.labels).tolist() == expected
    assert set(cut.train.indices) <= set(full.train.indices)  # a subset of the same split
    assert np.array_equal(cut.val.indices, full.val.indices)
    assert np.array_equal(cut.test.indices, full.test.indices)
    assert cut.info["options"] == {"drop_classes": [3, 8], "keep_fraction": 0.1}


def test_the_seed_fixes_which_items_stay() -> None:
    a = build_splits("digits", seed=0, drop_classes=[3], keep_fraction=0.2)
    b = build_splits("digits", seed=0, drop_classes=[3], keep_fraction=0.2)
    c = build_splits("digits", seed=1, drop_classes=[3], keep_fraction=0.2)
    assert np.array_equal(a.train.indices, b.train.indices)
    threes = [set(s.train.indices[s.train.labels == 3]) for s in (a, c)]
    assert threes[0] != threes[1]


@pytest.mark.parametrize(("fraction", "left"), [(0.0, 0), (0.001, 1), (1.0, 400)])
def test_fraction_edges(fraction: float, left: int) -> None:
    splits = build_splits("digits", drop_classes=[5], keep_fraction=fraction)
    assert int((splits.train.labels == 5).sum()) == left


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"drop_classes": [10]}, "distinct digits 0..9"),
        ({"drop_classes": [2, 2]}, "distinct digits 0..9"),
        ({"drop_classes": [2], "keep_fraction": 1.5}, r"keep_fraction must be in \[0, 1\]"),
    ],
)
def test_bad_options_are_errors(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_splits("digits", **options)


def test_options_are_listed_and_default_to_no_change() -> None:
    assert dataset_options("digits")["drop_classes"] == ()
    plain = build_splits("digits", keep_fraction=0.5)  # no classes named: nothing is cut
    assert len(plain.train) == 4000
