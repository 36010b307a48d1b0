"""What `image_folder` and `paired_folders` share: the two layouts and how splits are made.

Both accept ready-made split folders (`root/train`, optional `root/val`, `root/test`) or one
pool that is split here with a seed (`val_fraction`, `test_fraction`). There is nothing to
download for your own folders: their `download` option is ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset, Subset

from .sampling import carve, fraction_size

SPLIT_DIRS = ("train", "val", "test")


def check_channels(channels: int) -> None:
    """Images are converted to mode "L" or "RGB" (what models take): no other channel count."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")


def split_folders(root: Path, dataset: str, inside: str) -> dict[str, Path]:
    """`{"train": root/train, ...}` for the split folders present, else `{"train": root}`."""
    if not root.is_dir():
        raise FileNotFoundError(
            f"{dataset}: folder {root} not found. Expected {root}/{inside}, or "
            f"{root}/train/{inside} with optional val/ and test/ beside train/"
        )
    if (root / "train").is_dir():
        return {name: root / name for name in SPLIT_DIRS if (root / name).is_dir()}
    return {"train": root}


def assign_splits(
    parts: dict[str, Dataset],
    labels: np.ndarray,
    seed: int,
    val_fraction: float,
    test_fraction: float,
) -> tuple[Subset, Dataset, Dataset]:
    """Use the given val/test folders; carve the missing ones out of train (stratified)."""
    n = len(labels)
    n_val = 0 if "val" in parts else fraction_size(n, val_fraction)
    n_test = 0 if "test" in parts else fraction_size(n, test_fraction)
    val_idx, test_idx, train_idx = carve(labels, seed, n_val, n_test)
    train = parts["train"]
    return (
        Subset(train, train_idx.tolist()),
        parts.get("val", Subset(train, val_idx.tolist())),
        parts.get("test", Subset(train, test_idx.tolist())),
    )
