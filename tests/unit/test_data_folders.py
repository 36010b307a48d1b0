"""Your own folders: `image_folder` (classification) and `paired_folders` (segmentation),
including the report of images and masks that do not pair."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import IGNORE_INDEX, build_splits, pair_by_stem

CLASSES = ["cat", "dog", "fox"]


def write_class_folders(root: Path, per_class: int = 10, classes: list[str] = CLASSES) -> None:
    """`root/<class>/<n>.png|jpg` in mixed modes, as user folders tend to be."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            if k % 3 == 0:
                Image.new("L", (10, 8), 30 * c + k).save(root / name / f"{k}.png")
            elif k % 3 == 1:
                Image.new("RGB", (12, 9), (80 * c, k, 50)).save(root / name / f"{k}.jpg")
            else:
                Image.new("P", (7, 7), c).save(root / name / f"{k}.png")


def write_pair(root: Path, stem: str, mask: np.ndarray, ext: str = ".png") -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    h, w = mask.shape
    Image.new("RGB", (w, h), (len(stem) * 20, 100, 50)).save(root / "images" / f"{stem}{ext}")
    Image.fromarray(mask.astype(np.uint8), "L").save(root / "masks" / f"{stem}.png")


def stripes(value: int, h: int = 6, w: int = 8) -> np.ndarray:
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[:, w // 2 :] = value
    return mask


def test_image_folder_splits_one_pool_by_class(tmp_path: Path) -> None:
    write_class_folders(tmp_path)
    splits = build_splits("image_folder", root=tmp_path, seed=0)
    assert splits.classes == CLASSES and splits.task == "classification" and splits.size is None
    assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 3, 3)
    assert sorted(splits.val[i][1] for i in range(3)) == [0, 1, 2]  # one per class
    assert sorted(splits.test[i][1] for i in range(3)) == [0, 1, 2]
    modes = {splits.train[i][0].mode for i in range(len(splits.train))}
    assert modes == {"RGB"}  # L, RGB and palette files all become the declared mode
    assert len(splits.mean) == 3 and all(0.0 <= m <= 1.0 for m in splits.mean)
    parts = [set(s.indices) for s in (splits.train, splits.val, splits.test)]
    assert sum(map(len, parts)) == 30 == len(set().union(*parts))


def test_image_folder_is_seeded_and_can_be_grayscale(tmp_path: Path) -> None:
    write_class_folders(tmp_path)
    a = build_splits("image_folder", root=tmp_path, seed=0, channels=1)
    b = build_splits("image_folder", root=tmp_path, seed=0, channels=1)
    c = build_splits("image_folder", root=tmp_path, seed=1, channels=1)
    assert a.val.indices == b.val.indices and a.val.indices != c.val.indices
    img, label = a.train[0]
    assert img.mode == "L" and type(label) is int and a.channels == 1


def test_image_folder_uses_split_folders_with_the_train_class_indices(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "train", per_class=4)
    write_class_folders(tmp_path / "test", per_class=2, classes=["dog", "fox"])
    splits = build_splits("image_folder", root=tmp_path, seed=0)
    assert len(splits.test) == 4 and len(splits.val) == 1 and len(splits.train) == 11
    assert sorted({splits.test[i][1] for i in range(4)}) == [1, 2]  # dog, fox keep their index


def test_image_folder_rejects_classes_missing_from_train(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "train", per_class=2, classes=["cat", "dog"])
    write_class_folders(tmp_path / "val", per_class=1, classes=["cat", "eel"])
    with pytest.raises(ValueError, match="eel"):
        build_splits("image_folder", root=tmp_path)


def test_image_folder_missing_root_describes_the_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="<class>/<image>"):
        build_splits("image_folder", root=tmp_path / "nope")


def test_paired_folders_pair_by_stem_and_infer_classes(tmp_path: Path) -> None:
    for k in range(10):
        write_pair(tmp_path, f"s{k}", stripes(1 + k % 3), ".jpg" if k % 2 else ".png")
    splits = build_splits("paired_folders", root=tmp_path, seed=0)
    assert splits.classes == ["background", "1", "2", "3"] and splits.task == "segmentation"
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 1, 1)
    assert splits.ignore_index is None
    img, mask = splits.train[0]
    assert img.mode == "RGB" and mask.mode == "L" and mask.size == img.size == (8, 6)
    stem = splits.train.dataset.pairs[splits.train.indices[0]][0].stem
    assert np.array_equal(np.asarray(mask), stripes(1 + int(stem[1:]) % 3))
    assert splits.info["pairing_report"]["train"]["pairs"] == 10


def test_unpaired_files_are_reported_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for stem in ("a", "b", "c"):
        write_pair(tmp_path, stem, stripes(1))
    Image.new("RGB", (8, 6)).save(tmp_path / "images" / "lonely.jpg")
    Image.new("L", (8, 6)).save(tmp_path / "masks" / "orphan.png")
    Image.new("RGB", (8, 6)).save(tmp_path / "images" / "b.jpg")  # b.png and b.jpg: ambiguous
    (tmp_path / "masks" / "notes.txt").write_text("not a mask")
    with caplog.at_level(logging.WARNING):
        splits = build_splits("paired_folders", root=tmp_path, val_fraction=0, test_fraction=0)
    report = splits.info["pairing_report"]["train"]
    assert report == {
        "pairs": 2,
        "images_without_mask": ["lonely.jpg"],
        "masks_without_image": ["orphan.png"],
        "duplicate_stems": ["b"],
        "ignored_files": ["masks/notes.txt"],
    }
    assert "lonely.jpg" in caplog.text and "orphan.png" in caplog.text
    assert len(splits.train) == 2
    with pytest.raises(ValueError, match="strict"):
        build_splits("paired_folders", root=tmp_path, strict=True)


def test_pair_by_stem_returns_the_pairs(tmp_path: Path) -> None:
    write_pair(tmp_path, "x", stripes(1))
    report = pair_by_stem(tmp_path / "images", tmp_path / "masks")
    assert report.pairs == [(tmp_path / "images" / "x.png", tmp_path / "masks" / "x.png")]
    assert report.problems == 0


def test_nothing_matched_is_an_error(tmp_path: Path) -> None:
    write_pair(tmp_path, "a", stripes(1))
    (tmp_path / "masks" / "a.png").rename(tmp_path / "masks" / "z.png")
    with pytest.raises(ValueError, match="no image matched a mask"):
        build_splits("paired_folders", root=tmp_path)


def test_palette_masks_keep_their_indices_and_classes_are_checked(tmp_path: Path) -> None:
    for stem in ("a", "b", "c"):
        write_pair(tmp_path, stem, stripes(2))
    palette = Image.fromarray(stripes(2), "P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])  # index 2 is bright green
    palette.save(tmp_path / "masks" / "a.png")
    splits = build_splits("paired_folders", root=tmp_path, classes=["bg", "road", "car"])
    assert splits.classes == ["bg", "road", "car"]
    masks = [np.asarray(splits.train.dataset[i][1]) for i in range(3)]
    assert all(np.array_equal(m, stripes(2)) for m in masks)
    with pytest.raises(ValueError, match="values >= 2"):
        build_splits("paired_folders", root=tmp_path, classes=["bg", "road"])


def test_black_and_white_masks_need_binary(tmp_path: Path) -> None:
    for stem in ("a", "b", "c"):
        write_pair(tmp_path, stem, stripes(255))
    with pytest.raises(ValueError, match="binary: true"):
        build_splits("paired_folders", root=tmp_path)
    splits = build_splits("paired_folders", root=tmp_path, binary=True, channels=1)
    assert splits.classes == ["background", "foreground"] and splits.ignore_index is None
    img, mask = splits.train[0]
    assert img.mode == "L" and set(np.unique(np.asarray(mask))) == {0, 1}


def test_ignore_value_is_kept_and_announced(tmp_path: Path) -> None:
    for stem in ("a", "b", "c"):
        mask = stripes(1)
        mask[0, 0] = IGNORE_INDEX
        write_pair(tmp_path, stem, mask)
    splits = build_splits("paired_folders", root=tmp_path)
    assert splits.classes == ["background", "1"] and splits.ignore_index == IGNORE_INDEX


def test_mask_of_another_size_is_refused(tmp_path: Path) -> None:
    for stem in ("a", "b"):
        write_pair(tmp_path, stem, stripes(1))
    Image.fromarray(stripes(1, h=5), "L").save(tmp_path / "masks" / "b.png")
    with pytest.raises(ValueError, match=r"differ in size.*b\.png"):
        build_splits("paired_folders", root=tmp_path)


def test_colour_masks_are_refused(tmp_path: Path) -> None:
    for stem in ("a", "b"):
        write_pair(tmp_path, stem, stripes(1))
    Image.new("RGB", (8, 6), (255, 0, 0)).save(tmp_path / "masks" / "a.png")
    with pytest.raises(ValueError, match="colour image"):
        build_splits("paired_folders", root=tmp_path)


def test_paired_split_folders(tmp_path: Path) -> None:
    for k in range(6):
        write_pair(tmp_path / "train", f"t{k}", stripes(1))
    for k in range(2):
        write_pair(tmp_path / "val", f"v{k}", stripes(2))
    splits = build_splits("paired_folders", root=tmp_path, test_fraction=0.34)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4, 2, 2)
    assert splits.classes == ["background", "1", "2"]
    assert set(splits.info["pairing_report"]) == {"train", "val"}
