"""`mnist`, `fashionmnist` and `cifar10` through torchvision, with a seeded validation split.

The official test split is the test split; val is a stratified, seeded slice of the official
train split (`val_fraction`, 10% by default), so early stopping never looks at test data.
Items are torchvision's own: `(PIL image, int)`, mode "L" 28x28 or "RGB" 32x32. mean/std are
computed from the train part of the data (torchvision holds it in memory anyway).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch.utils.data import Subset
from torchvision import datasets

from .digits import DIGIT_CLASSES
from .layout import Layout, open_torchvision
from .sampling import carve, fraction_size
from .splits import Splits, register_dataset
from .stats import pixel_stats


@register_dataset("mnist")
def build_mnist(root: Path, download: bool, seed: int, val_fraction: float = 0.1) -> Splits:
    """Full MNIST (60k/10k). Classes are "0".."9", the same names as `digits`, so a model
    trained on either serves the same labels (torchvision's are "0 - zero", ...)."""
    return _mnist_like(datasets.MNIST, list(DIGIT_CLASSES), root, download, seed, val_fraction)


@register_dataset("fashionmnist")
def build_fashionmnist(root: Path, download: bool, seed: int, val_fraction: float = 0.1) -> Splits:
    """Fashion-MNIST (60k/10k), torchvision's class names."""
    cls = datasets.FashionMNIST
    return _mnist_like(cls, list(cls.classes), root, download, seed, val_fraction)


@register_dataset("cifar10")
def build_cifar10(root: Path, download: bool, seed: int, val_fraction: float = 0.1) -> Splits:
    """CIFAR-10 (50k/10k, 32x32 RGB), class names from the dataset's `batches.meta`."""
    cls = datasets.CIFAR10
    files = [name for name, _ in (*cls.train_list, *cls.test_list)] + [cls.meta["filename"]]
    layout = Layout(
        "CIFAR-10",
        root / cls.base_folder,
        tuple(files),
        f"  {root}/{cls.base_folder}/{{{', '.join(files)}}}  (pickled batches, as "
        "extracted from cifar-10-python.tar.gz; torchvision checks their MD5)",
    )
    train, test = _official_splits(cls, layout, root, download)
    labels = np.asarray(train.targets)
    return _with_val(train, test, labels, train.data, list(train.classes), 3, seed, val_fraction)


def _mnist_like(
    cls: type[datasets.MNIST],
    classes: list[str],
    root: Path,
    download: bool,
    seed: int,
    val_fraction: float,
) -> Splits:
    # torchvision looks in root/<ClassName>/raw for the uncompressed files.
    raw = root / cls.__name__ / "raw"
    files = tuple(os.path.splitext(name)[0] for name, _ in cls.resources)
    layout = Layout(
        cls.__name__,
        raw,
        files,
        f"  {raw}/{{{', '.join(files)}}}  (idx files, uncompressed)",
    )
    train, test = _official_splits(cls, layout, root, download)
    labels, pixels = train.targets.numpy(), train.data.numpy()
    return _with_val(train, test, labels, pixels, classes, 1, seed, val_fraction)


def _official_splits(
    cls: type[datasets.VisionDataset], layout: Layout, root: Path, download: bool
) -> tuple[datasets.VisionDataset, datasets.VisionDataset]:
    """The official train and test sets (the train call downloads both when asked)."""
    train = open_torchvision(
        layout, download, lambda: cls(str(root), train=True, download=download)
    )
    test = open_torchvision(layout, download, lambda: cls(str(root), train=False))
    return train, test


def _with_val(
    train: datasets.VisionDataset,
    test: datasets.VisionDataset,
    labels: np.ndarray,
    pixels: np.ndarray,
    classes: list[str],
    channels: int,
    seed: int,
    val_fraction: float,
) -> Splits:
    """Carve val out of the official train split; mean/std from what is left for training."""
    val_idx, train_idx = carve(labels, seed, fraction_size(len(labels), val_fraction))
    mean, std = pixel_stats(pixels[train_idx], channels)
    height, width = pixels.shape[1:3]
    return Splits(
        train=Subset(train, train_idx.tolist()),
        val=Subset(train, val_idx.tolist()),
        test=test,
        classes=classes,
        task="classification",
        channels=channels,
        size=(int(height), int(width)),
        mean=mean,
        std=std,
        info={"source": f"torchvision {type(train).__name__}", "stats": "train split"},
    )
