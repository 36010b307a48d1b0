"""Tiny COCO-format files in the real layout, written by the tests (CVAT "COCO 1.0" style):
non-contiguous category ids, polygons as flat coordinate lists, uncompressed RLE (column-major
run lengths starting with background) and compressed RLE strings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as pycocotools_mask

H, W = 12, 16
CATEGORIES = [
    {"id": 3, "name": "shirt", "supercategory": "upperbody"},
    {"id": 7, "name": "pocket", "supercategory": "garment part"},
    {"id": 10, "name": "hat", "supercategory": "head"},
]
SHIRT, POCKET, HAT = 1, 2, 3  # contiguous indices by id: 3 -> 1, 7 -> 2, 10 -> 3


def rect_polygon(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE, by hand: runs over the column-major pixels, zeros first."""
    flat = mask.astype(np.uint8).flatten(order="F")
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def compressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's compressed RLE as it is stored in JSON (counts as an ASCII string)."""
    rle = pycocotools_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def write_coco(
    root: Path,
    images: dict[str, list[dict[str, Any]]],
    json_name: str = "annotations/instances_default.json",
    folder: str = "images",
    on_disk: set[str] | None = None,
) -> Path:
    """`root/<json_name>` listing `images` (file name -> annotations), files under `folder`."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    entries, annotations = [], []
    next_id = 1
    for image_id, (name, anns) in enumerate(images.items(), start=1):
        entries.append({"id": image_id, "file_name": name, "height": H, "width": W})
        if on_disk is None or name in on_disk:
            shade = 40 * image_id
            Image.new("RGB", (W, H), (shade, 255 - shade, 90)).save(root / folder / name)
        for ann in anns:
            annotations.append({"id": next_id, "image_id": image_id, "iscrowd": 0, **ann})
            next_id += 1
    path = root / json_name
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "info": {"description": "cvserve test"},
        "licenses": [],
        "images": entries,
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    path.write_text(json.dumps(data))
    return path


def garment_images() -> dict[str, list[dict[str, Any]]]:
    """Four images: polygons that overlap, RLE of both kinds with a crowd region, one image
    without annotations, one with a small object only."""
    return {
        "a.png": [
            # The pocket comes first in the file; it must still end up on top of the shirt.
            {"category_id": 7, "segmentation": [rect_polygon(6, 3, 10, 7)]},
            {"category_id": 3, "segmentation": [rect_polygon(2, 1, 14, 10)]},
        ],
        "b.png": [
            {"category_id": 10, "segmentation": uncompressed_rle(box(0, 3, 0, 6))},
            {"category_id": 3, "segmentation": compressed_rle(box(4, 12, 0, 8))},
            {"category_id": 3, "segmentation": compressed_rle(box(4, 12, 10, 16)), "iscrowd": 1},
        ],
        "empty.png": [],
        "d.png": [{"category_id": 7, "segmentation": [rect_polygon(1, 1, 5, 5)]}],
    }
