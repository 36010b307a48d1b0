"""`hf`: Hugging Face datasets from local folders that `datasets` itself wrote, offline.

Each test saves a small dataset with `save_to_disk` or as hub-style parquet shards and reads
it back through `build_splits("hf", ...)` with the hub switched off: nothing may download.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Before `datasets` is imported: it reads these once.
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
datasets = pytest.importorskip("datasets")

from training.config import load_config  # noqa: E402
from training.data import DIGIT_CLASSES, IGNORE_INDEX, build_splits, load_mnist_5k  # noqa: E402
from training.engine import fit  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parents[2] / "training" / "configs"


def real_digits(n: int, start: int = 0) -> datasets.Dataset:
    """`n` real MNIST digits (every class) as an `image` + `ClassLabel` dataset."""
    images, labels = load_mnist_5k()
    picks = [(start + k * 37) % len(labels) for k in range(n)]  # rows are sorted by label
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=DIGIT_CLASSES)}
    )
    return datasets.Dataset.from_dict(
        {
            "image": [Image.fromarray(images[i]) for i in picks],
            "label": [int(labels[i]) for i in picks],
        },
        features=features,
    )


def test_the_hub_is_off_in_these_tests() -> None:
    assert datasets.config.HF_HUB_OFFLINE


def test_save_to_disk_dataset_dict_keeps_labels_names_and_splits(tmp_path: Path) -> None:
    train, val = real_digits(60), real_digits(20, start=11)
    datasets.DatasetDict({"train": train, "validation": val}).save_to_disk(tmp_path / "digits")
    splits = build_splits("hf", root=tmp_path, path="digits", channels=1, seed=3)
    assert splits.task == "classification" and splits.classes == DIGIT_CLASSES
    assert (len(splits.train), len(splits.val), len(splits.test)) == (54, 20, 6)
    image, label = splits.val[4]
    assert image.mode == "L" and image.size == (28, 28) and label == val[4]["label"]
    np.testing.assert_array_equal(np.asarray(image), np.asarray(val[4]["image"]))
    assert splits.info["splits"] == {"train": 60, "val": 20}
    assert splits.info["source"].endswith("digits") and len(splits.mean) == 1


def test_one_saved_dataset_with_string_labels_is_split_here(tmp_path: Path) -> None:
    names = ["tabby", "beagle", "tabby", "pug"] * 5
    table = datasets.Dataset.from_dict(
        {
            "photo": [Image.new("RGB", (6, 5), (10 * k, 0, 0)) for k in range(20)],
            "breed": names,
        },
        features=datasets.Features({"photo": datasets.Image(), "breed": datasets.Value("string")}),
    )
    table.save_to_disk(tmp_path / "pets")
    splits = build_splits(
        "hf", root=tmp_path / "pets", image_column="photo", label_column="breed", seed=0
    )
    assert splits.classes == ["beagle", "pug", "tabby"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (16, 2, 2)
    i = splits.train.indices[0]
    assert splits.train[0][1] == splits.classes.index(names[i])


def test_hub_style_parquet_shards_for_segmentation(tmp_path: Path) -> None:
    """The layout of a hub dataset repository (`data/<split>-00000-of-00001.parquet`) with
    the column names of a segmentation set such as segments/sidewalk-semantic."""
    rng = np.random.default_rng(0)
    masks = [rng.integers(0, 3, size=(5, 7)).astype(np.uint8) for _ in range(12)]
    masks[0][0, 0] = IGNORE_INDEX
    table = datasets.Dataset.from_dict(
        {
            "pixel_values": [Image.new("RGB", (7, 5), (k * 20, 9, 9)) for k in range(12)],
            "label": [Image.fromarray(m, "L") for m in masks],
        },
        features=datasets.Features({"pixel_values": datasets.Image(), "label": datasets.Image()}),
    )
    (tmp_path / "data").mkdir()
    table.select(range(10)).to_parquet(tmp_path / "data" / "train-00000-of-00001.parquet")
    table.select(range(10, 12)).to_parquet(tmp_path / "data" / "test-00000-of-00001.parquet")
    splits = build_splits(
        "hf",
        root=tmp_path,
        image_column="pixel_values",
        mask_column="label",
        cache_dir=str(tmp_path / "cache"),
    )
    assert splits.task == "segmentation" and splits.classes == ["background", "1", "2"]
    assert splits.ignore_index == IGNORE_INDEX
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 1, 2)
    image, mask = splits.test[1]
    assert image.size == (7, 5) and mask.mode == "L"
    np.testing.assert_array_equal(np.asarray(mask), masks[11])
    named = build_splits(
        "hf",
        root=tmp_path,
        image_column="pixel_values",
        mask_column="label",
        classes=["road", "car", "person"],
        cache_dir=str(tmp_path / "cache"),
    )
    assert named.classes == ["road", "car", "person"]
    with pytest.raises(ValueError, match="mask value 2 is not a class index"):
        build_splits(
            "hf",
            root=tmp_path,
            image_column="pixel_values",
            mask_column="label",
            classes=["road", "car"],
            cache_dir=str(tmp_path / "cache"),
        )


def test_errors_say_what_to_set(tmp_path: Path) -> None:
    real_digits(20).save_to_disk(tmp_path / "digits")
    with pytest.raises(ValueError, match=r"no column\(s\) \['img'\].*\['image', 'label'\]"):
        build_splits("hf", root=tmp_path / "digits", image_column="img")
    with pytest.raises(ValueError, match=r"no split 'holdout'; it has \['train'\]"):
        build_splits("hf", root=tmp_path / "digits", test_split="holdout")
    with pytest.raises(FileNotFoundError, match=r"needs data\.download=true"):
        build_splits("hf", root=tmp_path, path="someone/not-here")
    with pytest.raises(FileNotFoundError, match=r"set data\.root"):
        build_splits("hf", root=tmp_path / "nothing")


@pytest.mark.slow
def test_a_config_trains_on_a_saved_dataset(tmp_path: Path) -> None:
    """digits_mlp pointed at the same real digits saved by `datasets`: the card holds the
    dataset's class names and the hf source."""
    datasets.DatasetDict({"train": real_digits(120)}).save_to_disk(tmp_path / "digits")
    overrides = [
        "data.name=hf",
        f"data.root={tmp_path / 'digits'}",
        "data.options={channels: 1}",
        "input.size=[28, 28]",
        "epochs=1",
        "data.batch_size=32",
        f"output_dir={tmp_path / 'runs'}",
        "tracking.images=0",
    ]
    result = fit(load_config(CONFIG_DIR / "digits_mlp.yaml", overrides))
    assert result.card.classes == DIGIT_CLASSES
    assert result.card.dataset["name"] == "hf"
    assert result.card.dataset["sizes"] == {"train": 96, "val": 12, "test": 12}
    assert 0.0 <= result.metrics["test"]["accuracy"] <= 1.0
