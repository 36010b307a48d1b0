"""digit_pages: deterministic per seed, within its ranges, held-out digits in the test split."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import build_splits
from training.data.digits import digit_split_indices, load_mnist_5k

SMALL = {"canvas": [64, 320], "n_train": 4, "n_val": 2, "n_test": 6}


@pytest.fixture(scope="module")
def pages():
    return build_splits("digit_pages", seed=3, **SMALL)


def test_same_seed_same_pages_any_order(pages):
    again = build_splits("digit_pages", seed=3, **SMALL)
    for i in reversed(range(len(pages.test))):
        a, b = pages.test.page(i), again.test.page(i)
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
        assert np.array_equal(np.asarray(a.mask), np.asarray(b.mask))
        assert a.digits == b.digits


def test_another_seed_other_pages(pages):
    other = build_splits("digit_pages", seed=4, **SMALL)
    assert any(
        pages.test.page(i).image.size != other.test.page(i).image.size
        or not np.array_equal(
            np.asarray(pages.test.page(i).image), np.asarray(other.test.page(i).image)
        )
        for i in range(len(pages.test))
    )


def test_pages_within_their_ranges_with_masks_of_their_digits(pages):
    assert pages.task == "segmentation" and pages.size is None and len(pages.classes) == 11
    for i in range(len(pages.test)):
        page = pages.test.page(i)
        width, height = page.image.size
        assert 64 <= width <= 320 and 64 <= height <= 320
        assert 1 <= len(page.digits) <= 100
        mask = np.asarray(page.mask)
        assert mask.shape == (height, width)
        for digit in page.digits:
            x0, y0, x1, y1 = digit.bbox
            assert (mask[y0:y1, x0:x1] == digit.label + 1).any()
        assert set(np.unique(mask)) <= {0} | {d.label + 1 for d in page.digits}


def test_test_pages_use_only_held_out_digits():
    """Every digit on a test page is a test-split MNIST-5k digit (never seen in training):
    its pixels equal some test digit's scaled pixels, so check through the pool itself."""
    splits = build_splits("digit_pages", seed=0, n_train=1, n_val=1, n_test=2)
    held_out = set(digit_split_indices(0)["test"].tolist())
    assert set(splits.test.pool.indices.tolist()) == held_out
    assert not held_out & set(splits.train.pool.indices.tolist())
    images, _ = load_mnist_5k()
    assert len(splits.test.pool.images) == len(held_out) < len(images)


def test_many_digits_on_a_big_page():
    splits = build_splits(
        "digit_pages",
        seed=0,
        canvas=[1024, 1024],
        digits=[100, 100],
        digit_size=[28, 28],
        n_train=1,
        n_val=1,
        n_test=1,
    )
    page = splits.test.page(0)
    assert page.image.size == (1024, 1024)
    assert len(page.digits) >= 95  # a few may find no place with limited overlap


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="backgrounds"):
        build_splits("digit_pages", seed=0, backgrounds=["paper"])
    with pytest.raises(ValueError, match="digit_size"):
        build_splits("digit_pages", seed=0, canvas=[32, 64], digit_size=[40, 50])
