"""Class masks -> YOLO-seg polygon labels, and back (for the round-trip check).

Each connected component (8-connectivity) of each non-background class becomes one instance
whose YOLO class is the cvserve class index minus one (class 0, the background, has no
instances). YOLO labels hold ONE polygon per instance, so a component with holes (0, 6, 8,
9) is written as its outer contour joined to each hole by a zero-width "keyhole" cut; filled
with OpenCV's even-odd rule, the holes stay empty. Components of fewer than 3 contour points
(single-pixel specks) cannot be polygons and are dropped.

`write_yolo_dataset` writes the SAME train/val/test scenes that cvserve's trainer uses (the
splits come from `training.data.build_splits` with the same name, seed and options).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

Polygon = np.ndarray  # K x 2 float, (x, y) in pixels


def _keyhole(outer: np.ndarray, holes: list[np.ndarray]) -> np.ndarray:
    poly = outer
    for hole in holes:
        d = ((poly[:, None, :] - hole[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(d.argmin()), d.shape)
        ring = np.concatenate([hole[j:], hole[: j + 1]])
        poly = np.concatenate([poly[: i + 1], ring, poly[i:]])
    return poly


def mask_polygons(mask: np.ndarray, num_classes: int) -> list[tuple[int, Polygon]]:
    """`(class index, polygon)` per connected component of each class 1..num_classes-1."""
    import cv2
    from scipy import ndimage

    out = []
    for c in range(1, num_classes):
        components, n = ndimage.label(mask == c, structure=np.ones((3, 3), dtype=bool))
        for k in range(1, n + 1):
            binary = (components == k).astype(np.uint8)
            contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
            if hierarchy is None:
                continue
            rings = [ct.reshape(-1, 2).astype(np.float64) for ct in contours]
            outer = [r for r, h in zip(rings, hierarchy[0], strict=True) if h[3] < 0]
            holes = [r for r, h in zip(rings, hierarchy[0], strict=True) if h[3] >= 0]
            if not outer:
                continue
            outer.sort(key=len, reverse=True)
            poly = _keyhole(outer[0], holes)
            if len(poly) >= 3:
                out.append((c, poly))
    return out


def polygons_mask(polygons: list[tuple[int, Polygon]], height: int, width: int) -> np.ndarray:
    """Rasterize `(class, polygon)` pairs into a class-index mask (later ones on top)."""
    import cv2

    mask = np.zeros((height, width), dtype=np.uint8)
    for c, poly in polygons:
        layer = np.zeros_like(mask)
        cv2.fillPoly(layer, [np.round(poly).astype(np.int32)], 1)
        mask[layer > 0] = c
    return mask


def label_lines(polygons: list[tuple[int, Polygon]], height: int, width: int) -> list[str]:
    """YOLO-seg label lines: `cls x1 y1 x2 y2 ...`, coordinates normalised to [0, 1]."""
    lines = []
    for c, poly in polygons:
        xy = np.clip(poly / [width, height], 0.0, 1.0).ravel()
        lines.append(f"{c - 1} " + " ".join(f"{v:.6f}" for v in xy))
    return lines


def read_label_lines(lines: list[str], height: int, width: int) -> list[tuple[int, Polygon]]:
    """The inverse of `label_lines`."""
    out = []
    for line in lines:
        values = line.split()
        xy = np.asarray(values[1:], dtype=np.float64).reshape(-1, 2) * [width, height]
        out.append((int(values[0]) + 1, xy))
    return out


def write_yolo_dataset(
    out: str | Path, dataset: str = "digit_scenes", seed: int = 0, **options: Any
) -> Path:
    """Write `<out>/images|labels/<split>/` and `<out>/data.yaml`; returns data.yaml.

    `dataset`, `seed` and `options` are those of the cvserve config (`data.name`,
    `data.seed`, `data.options`), so YOLO sees exactly the scenes the other models see.
    """
    from training.data import build_splits

    out = Path(out).resolve()
    splits = build_splits(dataset, seed=seed, **options)
    if splits.task != "segmentation":
        raise ValueError(f"{dataset} is a {splits.task} dataset; YOLO-seg needs masks")
    for split in ("train", "val", "test"):
        data = getattr(splits, split)
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(len(data)):
            image, target = data[i]
            mask = np.asarray(target)
            stem = f"{i:05d}"
            image.save(out / "images" / split / f"{stem}.png")
            lines = label_lines(mask_polygons(mask, len(splits.classes)), *mask.shape)
            (out / "labels" / split / f"{stem}.txt").write_text("\n".join(lines))
    names = dict(enumerate(splits.classes[1:]))
    config = {
        "path": str(out),
        "train": "images/train",
        "val": "images/val",
        "test": "images/test",
        "names": names,
    }
    data_yaml = out / "data.yaml"
    data_yaml.write_text(yaml.safe_dump(config, sort_keys=False))
    return data_yaml
