"""`imagenette`: the 10-class ImageNet subset through torchvision (`size` "160px", "320px" or
"full"; "160px" by default, the one that trains on a CPU).

The official val split is the test split; val is a stratified, seeded slice of train. Classes
are the first English name torchvision gives each wnid ("tench", "English springer", ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Subset
from torchvision import datasets

from .layout import Layout, open_torchvision
from .sampling import carve, fraction_size
from .splits import Splits, register_dataset
from .stats import imagenet_stats

# torchvision keeps the archive per size and the known wnids in private tables; reading them
# (instead of copying) keeps the folder names and class names in step with the pinned version.
_ARCHIVES: dict[str, tuple[str, str]] = datasets.Imagenette._ARCHIVES
_WNIDS: dict[str, tuple[str, ...]] = datasets.Imagenette._WNID_TO_CLASS


@register_dataset("imagenette")
def build_imagenette(
    root: Path, download: bool, seed: int, size: str = "160px", val_fraction: float = 0.1
) -> Splits:
    """Imagenette under `root/imagenette2-160` (or `imagenette2-320`, `imagenette2`)."""
    if size not in _ARCHIVES:
        raise ValueError(f"imagenette size must be one of {', '.join(_ARCHIVES)}, got {size!r}")
    layout = _layout(root, size)
    if not download:
        layout.check()
        _check_wnids(layout.folder)

    def make(split: str) -> datasets.Imagenette:
        return datasets.Imagenette(str(root), split=split, size=size, download=download)

    train = open_torchvision(layout, download, lambda: make("train"))
    test = open_torchvision(layout, download, lambda: make("val"))
    if train.wnids != test.wnids:
        raise ValueError(
            f"{layout.folder}/train and /val hold different class folders "
            f"({train.wnids} vs {test.wnids}); labels would not match"
        )
    # `_samples` is torchvision's (path, label) list; the labels are needed to stratify val.
    labels = np.array([label for _, label in train._samples])
    val_idx, train_idx = carve(labels, seed, fraction_size(len(labels), val_fraction))
    mean, std = imagenet_stats()
    return Splits(
        train=Subset(train, train_idx.tolist()),
        val=Subset(train, val_idx.tolist()),
        test=test,
        classes=[names[0] for names in train.classes],
        task="classification",
        channels=3,
        size=None,
        mean=mean,
        std=std,
        info={"source": f"torchvision Imagenette {size}", "stats": "ImageNet (timm)"},
    )


def _layout(root: Path, size: str) -> Layout:
    folder = root / Path(_ARCHIVES[size][0]).stem
    picture = (
        f"  {folder}/train/<wnid>/*.JPEG\n  {folder}/val/<wnid>/*.JPEG\n"
        f"  (wnids: {', '.join(_WNIDS)}; the extracted {Path(_ARCHIVES[size][0]).name})"
    )
    return Layout("Imagenette", folder, ("train", "val"), picture)


def _check_wnids(folder: Path) -> None:
    """Unknown class folders make torchvision fail with a bare KeyError: name them instead."""
    for split in ("train", "val"):
        found = {p.name for p in (folder / split).iterdir() if p.is_dir()}
        unknown = sorted(found - set(_WNIDS))
        if unknown:
            raise ValueError(
                f"{folder / split} has folders that are not Imagenette wnids: {unknown}; "
                f"expected only {', '.join(_WNIDS)}"
            )
