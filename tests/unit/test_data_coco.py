"""`coco`: COCO-format instances (polygons, RLE, crowd) painted into class-index masks.

The annotation files are written here in the real format (as CVAT, Label Studio and Roboflow
export it): non-contiguous category ids, polygons as flat coordinate lists, uncompressed RLE
(column-major run lengths starting with background) and compressed RLE strings.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import IGNORE_INDEX, build_splits

pytest.importorskip("pycocotools")
from coco_files import (
    HAT,
    POCKET,
    SHIRT,
    H,
    W,
    garment_images,
    rect_polygon,
    write_coco,
)


def masks_by_name(splits) -> dict[str, np.ndarray]:
    out = {}
    for part in (splits.train, splits.val, splits.test):
        for i in range(len(part)):
            index = part.indices[i] if hasattr(part, "indices") else i
            dataset = part.dataset if hasattr(part, "indices") else part
            image, mask = part[i]
            assert image.size == (W, H) and image.mode == "RGB" and mask.mode == "L"
            out[dataset.images[index].path.name] = np.asarray(mask)
    return out


def test_polygons_rle_crowd_and_overlaps_become_one_class_mask(tmp_path: Path, caplog) -> None:
    write_coco(tmp_path, garment_images())
    with caplog.at_level(logging.WARNING):
        splits = build_splits(
            "coco", root=tmp_path, annotations="annotations/instances_default.json"
        )
    assert splits.task == "segmentation" and splits.classes == [
        "background",
        "shirt",
        "pocket",
        "hat",
    ]
    assert splits.ignore_index == IGNORE_INDEX
    masks = masks_by_name(splits)
    assert set(masks) == {"a.png", "b.png", "d.png"}  # the unannotated image is skipped ...
    assert "empty.png" in caplog.text  # ... and reported
    report = splits.info["coco_report"]["train"]
    assert report["images"] == 4 and report["annotations"] == 6 and report["crowd_annotations"] == 1
    assert report["images_without_annotations_names"] == ["empty.png"]
    assert report["images_without_annotations_handling"] == "skipped"
    assert [c["id"] for c in splits.info["categories"]] == [3, 7, 10]

    a = masks["a.png"]
    assert (a[4:6, 7:9] == POCKET).all()  # the smaller instance is drawn on top
    assert (a[2:9, 3:6] == SHIRT).all() and (a[2:9, 11:13] == SHIRT).all()
    assert (a[0] == 0).all() and (a[:, 0] == 0).all() and (a[11] == 0).all()

    b = masks["b.png"]
    expected = np.zeros((H, W), dtype=np.uint8)
    expected[0:3, 0:6] = HAT  # uncompressed RLE, exact
    expected[4:12, 0:8] = SHIRT  # compressed RLE, exact
    expected[4:12, 10:16] = IGNORE_INDEX  # crowd
    np.testing.assert_array_equal(b, expected)


def test_category_subset_order_sets_indices_and_the_rest_is_background(tmp_path: Path) -> None:
    write_coco(tmp_path, garment_images())
    splits = build_splits(
        "coco",
        root=tmp_path,
        annotations="annotations/instances_default.json",
        categories=["pocket", 3],  # by name or by id
        unannotated="background",
        crowd="instance",
    )
    assert splits.classes == ["background", "pocket", "shirt"]
    assert splits.ignore_index is None  # crowd painted as its category: no ignore pixels
    masks = masks_by_name(splits)
    assert set(masks) == {"a.png", "b.png", "d.png", "empty.png"}
    assert (masks["empty.png"] == 0).all()
    b = masks["b.png"]
    assert (b[0:3, 0:6] == 0).all()  # hat: not selected, background
    assert (b[4:12, 0:8] == 2).all() and (b[4:12, 10:16] == 2).all()
    assert (masks["a.png"][4:6, 7:9] == 1).all()


def test_separate_val_and_test_files_and_image_folder(tmp_path: Path) -> None:
    images = garment_images()
    write_coco(tmp_path, images, "train.json", folder="train")
    write_coco(tmp_path, {"v.png": images["a.png"]}, "val.json", folder="val")
    write_coco(tmp_path, {"t.png": images["d.png"]}, "test.json", folder="test")
    splits = build_splits(
        "coco",
        root=tmp_path,
        annotations="train.json",
        images="train",
        val_annotations="val.json",
        val_images="val",
        test_annotations="test.json",
        test_images="test",
    )
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3, 1, 1)
    assert (np.asarray(splits.val[0][1])[4:6, 7:9] == POCKET).all()


@pytest.mark.parametrize(
    ("images", "on_disk", "error", "words"),
    [
        (
            {
                "a.png": [{"category_id": 3, "segmentation": [rect_polygon(1, 1, 5, 5)]}],
                "gone.jpg": [],
            },
            {"a.png"},
            FileNotFoundError,
            ["instances_default.json", "gone.jpg", "missing"],
        ),
        (
            {"a.png": [{"category_id": 99, "segmentation": [rect_polygon(1, 1, 5, 5)]}]},
            None,
            ValueError,
            ["instances_default.json", "annotation 1", "category id 99", "a.png"],
        ),
        (
            {"a.png": [{"category_id": 3, "segmentation": [[1, 1, 5, 1, 5]]}]},
            None,
            ValueError,
            ["instances_default.json", "annotation 1", "polygon of 5 numbers"],
        ),
        (
            {"a.png": [{"category_id": 3, "segmentation": [[1, 1, 5, 1]]}]},  # read as a box
            None,
            ValueError,
            ["annotation 1", "polygon of 4 numbers"],
        ),
        (
            {"a.png": [{"category_id": 3, "segmentation": {"size": [H, W], "counts": [5, 3]}}]},
            None,
            ValueError,
            ["annotation 1", "RLE counts summing to 8"],
        ),
        (
            {"a.png": [{"category_id": 3, "segmentation": {"size": [W, H], "counts": "abc"}}]},
            None,
            ValueError,
            ["annotation 1", f"RLE of size [{W}, {H}]"],
        ),
        (
            {"a.png": [{"category_id": 3, "segmentation": [], "bbox": [1, 1, 4, 4]}]},
            None,
            ValueError,
            ["annotation 1", "empty segmentation"],
        ),
    ],
    ids=[
        "missing-image",
        "unknown-category",
        "odd-polygon",
        "box-like-polygon",
        "bad-rle",
        "rle-size",
        "box-only",
    ],
)
def test_errors_name_the_file_and_the_problem(
    tmp_path: Path, images, on_disk, error, words
) -> None:
    write_coco(tmp_path, images, on_disk=on_disk)
    with pytest.raises(error) as info:
        build_splits("coco", root=tmp_path, annotations="annotations/instances_default.json")
    for word in words:
        assert word in str(info.value)


def test_option_errors_say_what_to_set(tmp_path: Path) -> None:
    write_coco(tmp_path, garment_images())
    with pytest.raises(ValueError, match=r"set data\.options\.annotations"):
        build_splits("coco", root=tmp_path)
    with pytest.raises(ValueError, match=r"'jacket'.*shirt \(3\)"):
        build_splits(
            "coco",
            root=tmp_path,
            annotations="annotations/instances_default.json",
            categories=["jacket"],
        )
    with pytest.raises(ValueError, match="crowd='drop'"):
        build_splits(
            "coco", root=tmp_path, annotations="annotations/instances_default.json", crowd="drop"
        )
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json is not valid JSON"):
        build_splits("coco", root=tmp_path, annotations="broken.json")


def test_an_image_of_another_size_than_its_entry_is_an_error(tmp_path: Path) -> None:
    write_coco(tmp_path, garment_images())
    Image.new("RGB", (W + 1, H), 0).save(tmp_path / "images" / "b.png")
    with pytest.raises(ValueError, match=f"b.png is {W + 1}x{H} .* JSON says {W}x{H}"):
        build_splits("coco", root=tmp_path, annotations="annotations/instances_default.json")


def test_box_only_annotations_can_be_skipped_or_filled(tmp_path: Path) -> None:
    """A rectangle drawn in CVAT or Label Studio exports as a bbox with no segmentation."""
    images = garment_images()
    images["a.png"].append({"category_id": 10, "segmentation": [], "bbox": [11, 0, 4, 2]})
    write_coco(tmp_path, images)
    args = {"root": tmp_path, "annotations": "annotations/instances_default.json"}
    with pytest.raises(ValueError, match=r"empty segmentation.*box_only: skip or fill"):
        build_splits("coco", **args)
    skipped = build_splits("coco", box_only="skip", **args)
    assert skipped.info["coco_report"]["train"]["box_only_annotations"] == 1
    assert not (masks_by_name(skipped)["a.png"] == HAT).any()
    filled = masks_by_name(build_splits("coco", box_only="fill", **args))["a.png"]
    assert (filled[0:2, 11:15] == HAT).all() and (filled == HAT).sum() == 8
