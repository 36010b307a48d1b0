"""`coco`: semantic segmentation from a COCO-format annotation JSON and an image folder.

COCO's instance format is what Fashionpedia, COCO itself and the exports of CVAT ("COCO 1.0"),
Label Studio and Roboflow share. Each image's instances (polygons, uncompressed or compressed
RLE, decoded with pycocotools) are painted into one class-index mask:

- Classes: background is 0; the selected categories get 1..K in the order of `categories`
  (or of their ids when it is not given). COCO ids need not be contiguous (COCO skips ids,
  Fashionpedia starts at 0), so the index is never the id. The card records index, id, name.
- Overlaps: crowd regions first, then the instances from the largest to the smallest area
  (pixels after decoding; ties by annotation id), each painted over what is there. A small
  object on a large one (a pocket on a jacket) stays visible, and the order is reproducible.
- Crowd (`iscrowd: 1`) regions of selected categories become `IGNORE_INDEX` (255): they
  cover several objects without separating them, so their pixels are left out of the loss
  and the metrics, unless an ordinary instance is painted over them (`crowd: instance` paints
  them as their category instead).
- Categories not selected are background.

Everything is checked when the splits are built, with the JSON file in every message:
unknown image or category ids, malformed polygons or RLE, images missing on disk or of
another size than the JSON says. Images without any annotation are reported (logged and
listed in the card under `coco_report`), and skipped unless `unannotated: background`: tools
export every image of a task, labelled or not, and an unlabelled photo is not a true
"nothing here" example.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .folder_splits import assign_splits, check_channels
from .images import load_image, sample_stats, upright_size
from .masks import mask_image
from .splits import IGNORE_INDEX, Splits, register_dataset

log = logging.getLogger(__name__)

CROWD_MODES = ("ignore", "instance")
BOX_ONLY_MODES = ("error", "skip", "fill")
UNANNOTATED_MODES = ("skip", "background")
OVERLAP_RULE = (
    "crowd regions first (ignore), then instances from the largest to the smallest area, "
    "each painted over the earlier ones"
)
#: Names of images without annotations kept in the card (the count is always exact).
REPORT_NAMES = 50


@dataclass
class CocoCategories:
    """Selected COCO categories and their contiguous class indices (background is 0)."""

    ids: list[int]  # COCO category id of class index k + 1
    names: list[str]

    @property
    def classes(self) -> list[str]:
        return ["background", *self.names]

    def index_of(self) -> dict[int, int]:
        return {cid: k + 1 for k, cid in enumerate(self.ids)}

    def to_list(self) -> list[dict[str, Any]]:
        return [
            {"index": k + 1, "id": cid, "name": name}
            for k, (cid, name) in enumerate(zip(self.ids, self.names, strict=True))
        ]


@dataclass
class CocoImage:
    """One image of an annotation file and its instances, as the painter needs them."""

    path: Path
    height: int
    width: int
    annotations: list[dict[str, Any]]  # id, category_id, iscrowd, segmentation


@dataclass
class CocoReport:
    """What one annotation file held, and what was left out (nothing leaves silently)."""

    annotation_file: str
    images: int = 0
    annotations: int = 0
    crowd: int = 0
    box_only: int = 0  # annotations with a bbox but no segmentation (skipped or filled)
    not_selected: int = 0  # annotations of categories outside `categories` (background)
    unannotated: list[str] = field(default_factory=list)
    unannotated_kept: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "annotation_file": self.annotation_file,
            "images": self.images,
            "annotations": self.annotations,
            "crowd_annotations": self.crowd,
            "box_only_annotations": self.box_only,
            "annotations_of_unselected_categories": self.not_selected,
            "images_without_annotations": len(self.unannotated),
            "images_without_annotations_names": self.unannotated[:REPORT_NAMES],
            "images_without_annotations_handling": (
                "kept as background" if self.unannotated_kept else "skipped"
            ),
        }


class CocoMasks(Dataset):
    """`(PIL image, PIL mask mode "L")` items, masks painted from the annotations on access."""

    def __init__(
        self, images: list[CocoImage], index_of: dict[int, int], channels: int, crowd: str
    ) -> None:
        self.images = images
        self.index_of = index_of
        self.channels = channels
        self.crowd = crowd

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Image.Image, Image.Image]:
        record = self.images[i]
        image = load_image(record.path, self.channels)
        if (image.height, image.width) != (record.height, record.width):
            raise ValueError(
                f"{record.path} is {image.width}x{image.height} (upright) but its annotations "
                f"say {record.width}x{record.height}"
            )
        return image, mask_image(paint_mask(record, self.index_of, self.crowd))


def paint_mask(record: CocoImage, index_of: dict[int, int], crowd: str = "ignore") -> np.ndarray:
    """The `(H, W)` uint8 class-index mask of one image (see the module docstring's rules)."""
    mask = np.zeros((record.height, record.width), dtype=np.uint8)
    layers = []
    for ann in record.annotations:
        index = index_of.get(ann["category_id"])
        if index is None:
            continue  # a category that was not selected: background
        pixels = decode_segmentation(ann["segmentation"], record.height, record.width)
        is_crowd = bool(ann.get("iscrowd", 0)) and crowd == "ignore"
        layers.append((not is_crowd, -int(pixels.sum()), ann["id"], pixels, index, is_crowd))
    layers.sort(key=lambda layer: layer[:3])  # crowd first, then larger first, then by id
    for *_, pixels, index, is_crowd in layers:
        mask[pixels] = IGNORE_INDEX if is_crowd else index
    return mask


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Polygons or RLE (checked by `check_segmentation`) -> a boolean `(H, W)` array."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    return mask_utils.decode(rle).astype(bool)


def check_segmentation(segmentation: Any, height: int, width: int) -> str | None:
    """What is wrong with one annotation's `segmentation`, or None when it can be decoded."""
    if isinstance(segmentation, list):
        if not segmentation:
            return "an empty segmentation (a box-only annotation has no mask to train on)"
        for polygon in segmentation:
            if not isinstance(polygon, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in polygon
            ):
                return "a polygon that is not a flat list of numbers [x1, y1, x2, y2, ...]"
            if len(polygon) < 6 or len(polygon) % 2:
                return (
                    f"a polygon of {len(polygon)} numbers (needs an even count, at least 3 points)"
                )
        return None
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if size is None or counts is None:
            return "an RLE without 'size' and 'counts'"
        if list(size) != [height, width]:
            return f"an RLE of size {list(size)} on an image of [height, width] {[height, width]}"
        if isinstance(counts, list):
            if not all(isinstance(c, int) and c >= 0 for c in counts):
                return "RLE counts that are not non-negative integers"
            if sum(counts) != height * width:
                return f"RLE counts summing to {sum(counts)}, not height * width = {height * width}"
        elif not isinstance(counts, str):
            return "RLE counts that are neither a list of integers nor a compressed string"
        return None
    return f"a segmentation of type {type(segmentation).__name__} (polygons or RLE expected)"


@register_dataset("coco")
def build_coco(
    root: Path,
    download: bool,
    seed: int,
    annotations: str | None = None,
    images: str | None = None,
    val_annotations: str | None = None,
    val_images: str | None = None,
    test_annotations: str | None = None,
    test_images: str | None = None,
    categories: Sequence[str | int] | None = None,
    crowd: str = "ignore",
    unannotated: str = "skip",
    box_only: str = "error",
    channels: int = 3,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Splits:
    """COCO-format instances -> semantic segmentation splits.

    Paths are relative to `root` (or absolute). `annotations` is the training JSON; `images`
    the folder its `file_name`s are relative to (default: the first of `<root>/images`,
    `<root>` and the JSON's folder holding the first image, which fits CVAT, Label Studio
    and Roboflow exports). `val_*` / `test_*` name the other splits' files; a split without
    them is carved out of the training images with `val_fraction` / `test_fraction`.

    `categories` selects categories by name or id (their order sets the class indices); the
    rest is background. `crowd`: "ignore" (255) or "instance". `unannotated`: "skip" or
    "background" (kept as all-background masks); either way they are reported. `box_only`:
    what to do with an annotation that has a `bbox` but an empty `segmentation` (a rectangle
    drawn in CVAT or Label Studio): "error", "skip" it, or "fill" the box; counted in the
    report.
    """
    check_channels(channels)
    _check_choice("crowd", crowd, CROWD_MODES)
    _check_choice("unannotated", unannotated, UNANNOTATED_MODES)
    _check_choice("box_only", box_only, BOX_ONLY_MODES)
    if annotations is None:
        raise ValueError(f"coco: set data.options.annotations to the COCO JSON; {_found(root)}")
    files = {"train": (annotations, images)}
    files.update({"val": (val_annotations, val_images)} if val_annotations else {})
    files.update({"test": (test_annotations, test_images)} if test_annotations else {})
    loaded = {name: _read_json(_resolve(root, ann)) for name, (ann, _) in files.items()}
    train_json = _resolve(root, annotations)
    selected = select_categories(loaded["train"]["categories"], categories, train_json)
    for name in loaded.keys() - {"train"}:
        _check_same_categories(selected, loaded[name]["categories"], _resolve(root, files[name][0]))
    parts, reports = {}, {}
    has_crowd = False
    for name, (ann, folder) in files.items():
        path = _resolve(root, ann)
        folder_path = _resolve(root, folder) if folder else None
        records, report = read_split(path, loaded[name], folder_path, root, box_only)
        report.unannotated_kept = unannotated == "background"
        if not report.unannotated_kept:
            records = [r for r in records if r.annotations]
        if report.unannotated:
            log.warning(
                "%s: %d image(s) without annotations, %s (option unannotated): %s",
                path,
                len(report.unannotated),
                "kept as background" if report.unannotated_kept else "skipped",
                ", ".join(report.unannotated[:5]) + (" ..." if len(report.unannotated) > 5 else ""),
            )
        if not records:
            raise ValueError(f"{path}: no image left to train on ({report.to_dict()})")
        report.not_selected = sum(
            a["category_id"] not in selected.ids for r in records for a in r.annotations
        )
        has_crowd |= crowd == "ignore" and any(
            a.get("iscrowd", 0) and a["category_id"] in selected.ids
            for r in records
            for a in r.annotations
        )
        parts[name] = CocoMasks(records, selected.index_of(), channels, crowd)
        reports[name] = report
    labels = np.zeros(len(parts["train"]), dtype=np.int64)
    train, val, test = assign_splits(parts, labels, seed, val_fraction, test_fraction)
    mean, std = sample_stats([train.dataset.images[i].path for i in train.indices], channels, seed)
    return Splits(
        train=train,
        val=val,
        test=test,
        classes=selected.classes,
        task="segmentation",
        channels=channels,
        size=None,
        mean=mean,
        std=std,
        ignore_index=IGNORE_INDEX if has_crowd else None,
        info={
            "source": f"coco {train_json}",
            "stats": "sample of train images",
            "categories": selected.to_list(),
            "overlap": OVERLAP_RULE,
            "crowd": crowd,
            "coco_report": {name: r.to_dict() for name, r in reports.items()},
        },
    )


def select_categories(
    listed: list[dict[str, Any]], wanted: Sequence[str | int] | None, path: Path
) -> CocoCategories:
    """The categories to train on: all (sorted by id) or `wanted` (by name or id, in order)."""
    by_id = {int(c["id"]): str(c["name"]) for c in listed}
    if not by_id:
        raise ValueError(f"{path}: 'categories' is empty; there is nothing to segment")
    if wanted is None:
        ids = sorted(by_id)
    else:
        by_name = {name: cid for cid, name in by_id.items()}
        ids, unknown = [], []
        for item in wanted:
            cid = item if isinstance(item, int) and item in by_id else by_name.get(str(item))
            (ids if cid is not None else unknown).append(cid if cid is not None else item)
        if unknown:
            raise ValueError(
                f"categories {unknown} are not in {path}; it has: "
                + ", ".join(f"{name} ({cid})" for cid, name in sorted(by_id.items()))
            )
        if len(set(ids)) != len(ids):
            raise ValueError(f"categories {list(wanted)} name the same category twice")
    if len(ids) > IGNORE_INDEX - 1:
        raise ValueError(
            f"{path}: {len(ids)} categories do not fit a uint8 mask with background and ignore "
            f"({IGNORE_INDEX - 1} at most); select fewer with data.options.categories"
        )
    return CocoCategories(ids=ids, names=[by_id[c] for c in ids])


def read_split(
    path: Path, data: dict[str, Any], images: Path | None, root: Path, box_only: str = "error"
) -> tuple[list[CocoImage], CocoReport]:
    """The images of one annotation file with their instances, every problem an error."""
    categories = {int(c["id"]) for c in data["categories"]}
    records: dict[int, CocoImage] = {}
    folder = images or _image_folder(path, data["images"], root)
    for entry in data["images"]:
        try:
            image_id, name = int(entry["id"]), str(entry["file_name"])
            height, width = int(entry["height"]), int(entry["width"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{path}: image entry {entry!r} needs id, file_name, height and width ({exc})"
            ) from None
        if image_id in records:
            raise ValueError(f"{path}: image id {image_id} is listed twice")
        records[image_id] = CocoImage(folder / name, height, width, [])
    report = CocoReport(str(path), images=len(records))
    for ann in data["annotations"]:
        _add_annotation(path, ann, records, categories, report, box_only)
    _check_files(path, folder, list(records.values()))
    report.unannotated = [
        str(r.path.relative_to(folder)) for r in records.values() if not r.annotations
    ]
    return list(records.values()), report


def _add_annotation(
    path: Path,
    ann: dict[str, Any],
    records: dict[int, CocoImage],
    categories: set[int],
    report: CocoReport,
    box_only: str = "error",
) -> None:
    ann_id = ann.get("id")
    where = f"{path}: annotation {ann_id}"
    for key in ("id", "image_id", "category_id", "segmentation"):
        if key not in ann:
            raise ValueError(f"{where} has no {key!r}")
    record = records.get(ann["image_id"])
    if record is None:
        raise ValueError(f"{where} refers to image id {ann['image_id']}, which 'images' lacks")
    if ann["category_id"] not in categories:
        raise ValueError(
            f"{where} (image {record.path.name}) has category id {ann['category_id']}, which "
            f"'categories' does not define (ids: {sorted(categories)})"
        )
    segmentation = ann["segmentation"]
    if segmentation in ([], None) and box_only != "error":
        report.box_only += 1
        if box_only == "skip":
            return
        segmentation = [_box_polygon(ann.get("bbox"), where)]
    problem = check_segmentation(segmentation, record.height, record.width)
    if problem:
        hint = " (data.options.box_only: skip or fill)" if segmentation in ([], None) else ""
        raise ValueError(f"{where} (image {record.path.name}) has {problem}{hint}")
    record.annotations.append(
        {"id": ann["id"], "category_id": ann["category_id"], "segmentation": segmentation}
        | {"iscrowd": int(ann.get("iscrowd", 0))}
    )
    report.annotations += 1
    report.crowd += int(ann.get("iscrowd", 0))


def _box_polygon(bbox: Any, where: str) -> list[float]:
    """COCO's `[x, y, width, height]` as a rectangle polygon."""
    if not (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, int | float) and math.isfinite(v) for v in bbox)
        and bbox[2] > 0
        and bbox[3] > 0
    ):
        raise ValueError(f"{where} has neither a segmentation nor a valid bbox: {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def _check_files(path: Path, folder: Path, records: list[CocoImage]) -> None:
    """Every image exists and has the size its entry says (header reads, no decoding)."""
    missing = [r.path for r in records if not r.path.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise FileNotFoundError(
            f"{path}: {len(missing)} of {len(records)} images are missing under {folder}: {shown}"
        )
    for record in records:
        width, height = upright_size(record.path)
        if (height, width) != (record.height, record.width):
            raise ValueError(
                f"{path}: {record.path} is {width}x{height} (upright) but the JSON says "
                f"{record.width}x{record.height}"
            )


def _image_folder(path: Path, entries: list[dict[str, Any]], root: Path) -> Path:
    """Where the `file_name`s live: `<root>/images`, `<root>` or the JSON's folder."""
    candidates = [root / "images", root, path.parent]
    if not entries:
        return candidates[1]
    first = str(entries[0].get("file_name", ""))
    for folder in candidates:
        if (folder / first).is_file():
            return folder
    raise FileNotFoundError(
        f"{path}: image {first!r} not found in {', '.join(str(c) for c in candidates)}; set "
        "data.options.images to the folder the file names are relative to"
    )


def _check_same_categories(selected: CocoCategories, listed: list[dict], path: Path) -> None:
    by_id = {int(c["id"]): str(c["name"]) for c in listed}
    for cid, name in zip(selected.ids, selected.names, strict=True):
        if by_id.get(cid) != name:
            raise ValueError(
                f"{path}: category id {cid} is {by_id.get(cid)!r} here but {name!r} in the "
                "training annotations; every split must share the training categories"
            )


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file {path} not found; {_found(path.parent)}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if not isinstance(data, dict) or missing:
        raise ValueError(f"{path} is not a COCO instances file: it lacks {missing}")
    return data


def _resolve(root: Path, path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else root / path


def _found(folder: Path) -> str:
    found = sorted(str(p) for p in folder.glob("**/*.json"))[:5] if folder.is_dir() else []
    return f"JSON files under {folder}: {', '.join(found) or 'none'}"


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"coco option {key}={value!r}; choose one of {', '.join(choices)}")
