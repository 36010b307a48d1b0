"""`paired_folders`: segmentation from `images/` and `masks/` folders matched by file stem.

Masks are PNG class-index images (0 background, 255 ignore). Every mask is read once when
the splits are built, to infer or check the classes and to compare sizes with the images:
a bad mask fails there, with its file name, not deep inside a training epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .folder_splits import assign_splits, check_channels, split_folders
from .images import load_image, sample_stats, upright_size
from .masks import mask_image, read_index_mask
from .pairing import PairingReport, pair_by_stem
from .splits import IGNORE_INDEX, Splits, register_dataset


class PairedImages(Dataset):
    """`(image, mask)` file pairs read as `(PIL image, PIL mask mode "L")`.

    `binary=True` maps every non-zero mask value to 1 (masks saved as 0/255 black-and-white).
    """

    def __init__(self, pairs: list[tuple[Path, Path]], channels: int, binary: bool) -> None:
        self.pairs = pairs
        self.channels = channels
        self.binary = binary

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[Image.Image, Image.Image]:
        image_path, mask_path = self.pairs[i]
        image = load_image(image_path, self.channels)
        indices = read_index_mask(mask_path)
        if self.binary:
            indices = (indices > 0).astype(np.uint8)
        if indices.shape != (image.height, image.width):
            raise ValueError(
                f"{mask_path} is {indices.shape[1]}x{indices.shape[0]} but its image "
                f"{image_path} is {image.width}x{image.height} (upright)"
            )
        return image, mask_image(indices)


@register_dataset("paired_folders")
def build_paired_folders(
    root: Path,
    download: bool,
    seed: int,
    classes: Sequence[str] | None = None,
    channels: int = 3,
    binary: bool = False,
    strict: bool = False,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Splits:
    """`<root>[/train|val|test]/images/<stem>.<ext>` with `.../masks/<stem>.png`.

    Masks hold class indices (0 = background, 255 = ignore). Without `classes`, the classes are
    inferred from the largest mask value as ["background", "1", ...]. Files that do not pair
    are reported (`info["pairing_report"]`) and logged; `strict=True` turns any of them into a
    `ValueError`, as does finding no pair at all.
    """
    check_channels(channels)
    folders = split_folders(root, "paired_folders", "images/<stem>.<ext> + masks/<stem>.png")
    reports: dict[str, PairingReport] = {}
    for name, folder in folders.items():
        for sub in ("images", "masks"):
            if not (folder / sub).is_dir():
                raise FileNotFoundError(f"paired_folders needs {folder / sub}/ (not found)")
        reports[name] = report = pair_by_stem(folder / "images", folder / "masks")
        if strict and report.problems:
            raise ValueError(f"{folder}: {report.summary()} (strict: every file must pair)")
        if not report.pairs and name == "train":
            raise ValueError(f"{folder}: no image matched a mask by stem; {report.summary()}")
    seen = _scan_masks([p for r in reports.values() for p in r.pairs])
    class_names = _mask_classes(seen, classes, binary)
    parts = {name: PairedImages(r.pairs, channels, binary) for name, r in reports.items()}
    labels = np.zeros(len(parts["train"]), dtype=np.int64)
    train, val, test = assign_splits(parts, labels, seed, val_fraction, test_fraction)
    images = [train.dataset.pairs[i][0] for i in train.indices]
    mean, std = sample_stats(images, channels, seed)
    holds_ignore = not binary and any(IGNORE_INDEX in values for values in seen.values())
    return Splits(
        train=train,
        val=val,
        test=test,
        classes=class_names,
        task="segmentation",
        channels=channels,
        size=None,
        mean=mean,
        std=std,
        ignore_index=IGNORE_INDEX if holds_ignore else None,
        info={
            "source": f"paired folders {root}",
            "stats": "sample of train images",
            "pairing_report": {name: r.to_dict() for name, r in reports.items()},
        },
    )


def _scan_masks(pairs: list[tuple[Path, Path]]) -> dict[Path, set[int]]:
    """The values each mask holds; also checks every mask matches its (upright) image size."""
    seen: dict[Path, set[int]] = {}
    wrong_size = []
    for image_path, mask_path in pairs:
        indices = read_index_mask(mask_path)
        seen[mask_path] = {int(v) for v in np.unique(indices)}
        if indices.shape[::-1] != upright_size(image_path):
            wrong_size.append(mask_path.name)
    if wrong_size:
        raise ValueError(
            f"{len(wrong_size)} mask(s) differ in size from their image: {wrong_size[:5]}"
        )
    return seen


def _mask_classes(
    seen: dict[Path, set[int]], classes: Sequence[str] | None, binary: bool
) -> list[str]:
    """Check the mask values against `classes`, or infer the classes from them."""
    if binary:
        names = list(classes) if classes is not None else ["background", "foreground"]
        if len(names) != 2:
            raise ValueError(f"binary masks need exactly 2 classes, got {names}")
        return names
    values = set().union(*seen.values()) - {IGNORE_INDEX}
    if classes is not None:
        names = list(classes)
        bad = sorted(
            p.name for p, v in seen.items() if max(v - {IGNORE_INDEX}, default=0) >= len(names)
        )
        if bad:
            raise ValueError(
                f"masks {bad[:5]} hold values >= {len(names)}, the number of classes {names}"
            )
        return names
    if max(values, default=0) == 0:
        hint = (
            "they look like black-and-white masks: set binary: true"
            if any(IGNORE_INDEX in v for v in seen.values())
            else "pass the classes option or check the masks"
        )
        raise ValueError(f"every mask holds only background (0) or ignore (255); {hint}")
    return ["background", *(str(k) for k in range(1, max(values) + 1))]
