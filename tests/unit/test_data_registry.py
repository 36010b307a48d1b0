"""The dataset registry, the split carving every dataset uses, and the pixel statistics."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import build_splits, dataset_options, list_datasets, register_dataset
from training.data.sampling import carve, fraction_size, stratified_order
from training.data.stats import PixelStats, pixel_stats

CONTRACT_NAMES = [
    "cifar10",
    "coco",
    "digit_scenes",
    "digits",
    "fashionmnist",
    "hf",
    "image_folder",
    "imagenette",
    "mnist",
    "oxford_pets",
    "paired_folders",
]


def test_every_contract_name_is_registered() -> None:
    # A subset check: other test modules register fixture datasets of their own.
    names = list_datasets()
    assert set(CONTRACT_NAMES) <= set(names)
    assert names == sorted(names)


def test_unknown_dataset_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'mnsit'.*digit_scenes.*mnist"):
        build_splits("mnsit")


def test_unknown_option_is_a_type_error_naming_the_valid_ones() -> None:
    with pytest.raises(TypeError, match=r"does not take option.*n_tset.*n_val, n_test"):
        build_splits("digits", n_tset=10)


def test_registering_a_name_twice_raises() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_dataset("digits")(lambda root, download, seed: None)


def test_dataset_options_show_defaults() -> None:
    assert dataset_options("digits") == {
        "n_val": 500,
        "n_test": 500,
        "drop_classes": (),
        "keep_fraction": 0.1,
    }
    assert dataset_options("oxford_pets")["target"] == "category"


def test_build_splits_records_name_seed_and_options() -> None:
    splits = build_splits("digits", seed=3, n_val=100)
    assert splits.info["name"] == "digits"
    assert splits.info["seed"] == 3
    assert splits.info["options"] == {"n_val": 100}


@pytest.mark.parametrize("counts", [[50, 50, 50], [7, 30, 3, 60], [1, 99]])
def test_every_prefix_of_the_stratified_order_is_balanced(counts: list[int]) -> None:
    labels = np.repeat(np.arange(len(counts)), counts)
    order = stratified_order(labels, seed=0)
    assert sorted(order) == list(range(len(labels)))
    for prefix in (1, 5, 17, len(labels) // 2, len(labels)):
        got = np.bincount(labels[order[:prefix]], minlength=len(counts))
        expected = np.asarray(counts) * prefix / len(labels)
        assert np.all(np.abs(got - expected) <= 1.0), (prefix, got, expected)


def test_carve_gives_disjoint_sorted_pieces_and_is_seeded() -> None:
    labels = np.repeat(np.arange(4), 25)
    val, test, rest = carve(labels, 0, 20, 8)
    assert (len(val), len(test), len(rest)) == (20, 8, 72)
    assert not set(val) & set(test) and not set(val) & set(rest) and not set(test) & set(rest)
    assert np.array_equal(val, np.sort(val))
    assert np.bincount(labels[val]).tolist() == [5, 5, 5, 5]
    assert all(
        np.array_equal(a, b)
        for a, b in zip(carve(labels, 0, 20, 8), (val, test, rest), strict=True)
    )
    assert not np.array_equal(carve(labels, 1, 20, 8)[0], val)


def test_carve_refuses_to_leave_nothing() -> None:
    with pytest.raises(ValueError, match="keep a rest"):
        carve([0, 1, 2], 0, 2, 1)


@pytest.mark.parametrize(
    "n,fraction,expected", [(100, 0.1, 10), (5, 0.1, 1), (1, 0.5, 0), (9, 0, 0)]
)
def test_fraction_size(n: int, fraction: float, expected: int) -> None:
    assert fraction_size(n, fraction) == expected


def test_pixel_stats_match_numpy() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(7, 9, 11, 3), dtype=np.uint8)
    mean, std = pixel_stats(pixels, channels=3)
    as_float = pixels.reshape(-1, 3) / 255.0
    assert np.allclose(mean, as_float.mean(axis=0), atol=1e-4)
    assert np.allclose(std, as_float.std(axis=0), atol=1e-4)


def test_pixel_stats_accumulate_images_of_any_size_and_never_give_zero_std() -> None:
    stats = PixelStats(1)
    stats.update(np.full((3, 4), 255, np.uint8))
    stats.update(np.zeros((5, 2), np.uint8))
    mean, _ = stats.compute()
    assert mean == (round(12 / 22, 4),)
    assert pixel_stats(np.zeros((4, 4), np.uint8), 1)[1] == (1.0,)
    # A constant non-zero channel leaves float residue in the variance, not an exact 0.
    assert pixel_stats(np.full((12, 16), 11, np.uint8), 1)[1] == (1.0,)
