"""`digit_scenes`: generated canvases whose masks agree with the real digits pasted on them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from training.data import SCENE_CLASSES, Splits, build_splits, digit_scene, load_mnist_5k
from training.data.digits import digit_split_indices
from training.data.scene_render import STROKE_THRESHOLD

SMALL = {"n_train": 40, "n_val": 10, "n_test": 10}


@pytest.fixture(scope="module")
def scenes() -> Splits:
    return build_splits("digit_scenes", seed=0, **SMALL)


def test_default_lengths_and_facts() -> None:
    splits = build_splits("digit_scenes")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4000, 500, 500)
    assert splits.classes == SCENE_CLASSES == ["background", *(str(d) for d in range(10))]
    assert (splits.task, splits.channels, splits.size) == ("segmentation", 1, (64, 64))
    assert 0.0 < splits.mean[0] < 0.5 and 0.0 < splits.std[0] < 0.5


def test_items_are_a_gray_image_and_an_index_mask(scenes: Splits) -> None:
    for split in (scenes.train, scenes.val, scenes.test):
        img, mask = split[0]
        assert isinstance(img, Image.Image) and img.mode == "L" and img.size == (64, 64)
        assert isinstance(mask, Image.Image) and mask.mode == "L" and mask.size == (64, 64)
        assert np.asarray(mask).max() < len(SCENE_CLASSES)


def test_mask_classes_are_the_pasted_labels_plus_one(scenes: Splits) -> None:
    counts = []
    for i in range(len(scenes.train)):
        img, mask, placed = scenes.train.scene(i)
        m = np.asarray(mask)
        assert set(np.unique(m)) - {0} == {d.label + 1 for d in placed}
        inside = np.zeros_like(m, dtype=bool)
        for d in placed:
            x0, y0, x1, y1 = d.bbox
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            inside[y0:y1, x0:x1] = True
            assert (m[y0:y1, x0:x1] == d.label + 1).any()
        assert not m[~inside].any()  # no mask pixel outside the digits' boxes
        # Strokes are brighter than the background around them: the digits stay visible.
        pixels = np.asarray(img, dtype=float)
        assert pixels[m > 0].mean() > pixels[m == 0].mean() + 60
        counts.append(len(placed))
    assert min(counts) >= 1 and max(counts) <= 3 and len(set(counts)) > 1


def test_scenes_use_only_digits_of_their_own_split(scenes: Splits) -> None:
    own = digit_split_indices(0)
    for name in ("train", "val", "test"):
        split = getattr(scenes, name)
        assert np.array_equal(split.pool.indices, own[name])
        used = {
            int(split.pool.indices[d.source]) for i in range(len(split)) for d in split.scene(i)[2]
        }
        assert used <= set(own[name].tolist())
        others = set().union(*(set(own[o].tolist()) for o in own if o != name))
        assert not used & others


def test_pasted_digits_are_the_pool_digits_with_their_labels(scenes: Splits) -> None:
    images, labels = load_mnist_5k()
    pool = scenes.train.pool
    for d in scenes.train.scene(3).digits:
        row = pool.indices[d.source]
        assert d.label == labels[row] and np.array_equal(pool.images[d.source], images[row])


def test_a_scene_depends_only_on_seed_split_and_index(scenes: Splits) -> None:
    rebuilt = build_splits("digit_scenes", seed=0, **SMALL)
    late = [np.asarray(rebuilt.train[i][0]) for i in (7, 2)]  # another access order
    assert np.array_equal(late[0], np.asarray(scenes.train[7][0]))
    assert np.array_equal(late[1], np.asarray(scenes.train[2][0]))
    assert np.array_equal(np.asarray(scenes.train[-1][1]), np.asarray(scenes.train[39][1]))
    other = build_splits("digit_scenes", seed=1, **SMALL)
    assert not np.array_equal(np.asarray(other.train[7][0]), late[0])
    assert not np.array_equal(np.asarray(scenes.val[0][0]), np.asarray(scenes.test[0][0]))
    with pytest.raises(IndexError):
        scenes.train[40]


def test_rgb_and_size_options() -> None:
    splits = build_splits("digit_scenes", rgb=True, size=[48, 80], n_train=4, n_val=1, n_test=1)
    img, mask = splits.train[0]
    assert img.mode == "RGB" and img.size == (80, 48) and mask.size == (80, 48)
    assert splits.channels == 3 and len(splits.mean) == 3 and splits.size == (48, 80)


def test_bad_options_fail_early() -> None:
    with pytest.raises(ValueError, match="digit_size"):
        build_splits("digit_scenes", size=24)
    with pytest.raises(ValueError, match="size must be an int or two ints"):
        build_splits("digit_scenes", size=[64, 64, 3])


def test_digit_scene_with_chosen_digits_reports_their_labels_and_boxes() -> None:
    images, labels = load_mnist_5k()
    rows = [int(np.flatnonzero(labels == 3)[0]), int(np.flatnonzero(labels == 8)[0])]
    image, mask, placed = digit_scene(
        7, images[rows], labels[rows], (96, 96), n_digits=None, digit_size=(28, 28)
    )
    assert [d.label for d in placed] == [3, 8] and [d.source for d in placed] == [0, 1]
    m = np.asarray(mask)
    last = placed[-1]  # pasted last, so nothing covers it: its box is exactly its mask's box
    ys, xs = np.nonzero(m == last.label + 1)
    assert last.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    # The mask marks exactly the stroke pixels: a 28 px paste is the digit at its own scale.
    stroke = images[rows[1]] / 255.0 > STROKE_THRESHOLD
    sy, sx = np.nonzero(stroke)
    x0, y0, x1, y1 = last.bbox
    expected = stroke[sy.min() : sy.max() + 1, sx.min() : sx.max() + 1]
    assert np.array_equal(m[y0:y1, x0:x1] == last.label + 1, expected)
    assert image.size == (96, 96)


def test_digit_scene_is_reproducible_from_its_seed() -> None:
    images, labels = load_mnist_5k()
    a = digit_scene([1, 2, 3], images[:50], labels[:50])
    b = digit_scene([1, 2, 3], images[:50], labels[:50])
    assert a.digits == b.digits and np.array_equal(np.asarray(a.image), np.asarray(b.image))
