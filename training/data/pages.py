"""`digit_pages`: pages of any size with many real MNIST digits, to judge segmenters at scale.

A page is what a user sends that is not a 64 px scene: a canvas from 64 to 1024 px a side,
1 to 100 digits whose size (the side of the pasted 28 px MNIST cell, as `digit_scenes`'
`digit_size`) is one per page, log-uniform in 16..112 px, each digit within 20% of it; boxes
overlap by at most 10%; the background is black, noisy or the scenes' texture. Digit heights
in one page vary little, as on a real form: the scale a page is seen at is one number.

Page `i` of a split is drawn from the seed `(seed, split, i, PAGES_STREAM)`, independent of
access order and of the `digit_scenes` stream. Each split pastes only digits of the same split
of MNIST-5k (`digit_split_indices(seed)`, the split the digit classifier and the scenes use),
so test pages hold handwriting that neither default model saw in training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .digits import SPLIT_NAMES, DigitImages, digit_split_indices
from .scene_render import BACKGROUNDS, Scene, digit_scene
from .scenes import _pair, checked_index, generated_splits, object_size_range
from .splits import Splits, register_dataset
from .stats import PixelStats

#: Mixed into every page's seed so pages never replay the scenes' random streams.
PAGES_STREAM = 7919
#: Digits per page are capped so their cells cover at most this fraction of the canvas
#: (more would not find places with limited overlap).
MAX_FILL = 0.35
#: Each digit's size is the page's size times a factor in [1 - JITTER, 1 + JITTER].
JITTER = 0.2
_STATS_SAMPLE = 16


class DigitPages(Dataset):
    """One split of generated pages; items are `(PIL image, PIL mask mode "L")`, any size."""

    def __init__(
        self,
        split: str,
        length: int,
        seed: int,
        pool: DigitImages,
        canvas: tuple[int, int],
        digits: tuple[int, int],
        digit_size: tuple[int, int],
        backgrounds: Sequence[str],
        max_overlap: float = 0.1,
    ) -> None:
        if split not in SPLIT_NAMES:
            raise ValueError(f"split must be one of {SPLIT_NAMES}, got {split!r}")
        self.split, self.length, self.seed, self.pool = split, length, seed, pool
        self.canvas, self.digits, self.digit_size = canvas, digits, digit_size
        self.backgrounds, self.max_overlap = tuple(backgrounds), max_overlap

    def __len__(self) -> int:
        return self.length

    def page(self, i: int) -> Scene:
        """Page `i` with its placed digits (the same every time it is asked for)."""
        i = checked_index(i, self.length, "page")
        rng = np.random.default_rng([self.seed, SPLIT_NAMES.index(self.split), i, PAGES_STREAM])
        height, width = (int(rng.integers(self.canvas[0], self.canvas[1] + 1)) for _ in range(2))
        low, high = self.digit_size
        side = math.exp(rng.uniform(math.log(low), math.log(high)))
        side = min(side, min(height, width) / (1 + JITTER))
        sizes = (
            max(low, min(round(side * (1 - JITTER)), min(height, width))),
            max(low, min(round(side * (1 + JITTER)), min(height, width))),
        )
        fits = max(1, int(MAX_FILL * height * width / (side * side)))
        count = int(
            rng.integers(self.digits[0], max(self.digits[0], min(self.digits[1], fits)) + 1)
        )
        picks = rng.integers(0, len(self.pool.images), size=count)
        background = self.backgrounds[int(rng.integers(0, len(self.backgrounds)))]
        return digit_scene(
            rng,
            self.pool.images[picks],
            self.pool.labels[picks],
            (height, width),
            n_digits=None,
            digit_size=(min(sizes), max(sizes)),
            max_overlap=self.max_overlap,
            tries=50,
            background=background,
        )

    def __getitem__(self, i: int) -> tuple[Image.Image, Image.Image]:
        image, mask, _ = self.page(i)
        return image, mask


@register_dataset("digit_pages")
def build_digit_pages(
    root: Path,
    download: bool,
    seed: int,
    canvas: int | Sequence[int] = (64, 1024),
    digits: int | Sequence[int] = (1, 100),
    digit_size: int | Sequence[int] = (16, 112),
    backgrounds: Sequence[str] = ("black", "noise", "texture"),
    n_train: int = 200,
    n_val: int = 50,
    n_test: int = 50,
) -> Splits:
    """Pages with sides in `canvas` px (inclusive range), `digits` per page and per-page digit
    sizes in `digit_size`; `root`/`download` are unused. Images differ in size (`size` None):
    a model trained on them needs `input.size` and crops."""
    side_range = _pair(canvas, "canvas")
    per_page = _pair(digits, "digits")
    size_range = _pair(digit_size, "digit_size")
    lengths = {"train": n_train, "val": n_val, "test": n_test}
    if any(n < 0 for n in lengths.values()) or n_train == 0:
        raise ValueError(f"page counts must be >= 0 and n_train > 0, got {lengths}")
    if not 1 <= side_range[0] <= side_range[1]:
        raise ValueError(f"canvas must be a range 1 <= low <= high, got {side_range}")
    if not 1 <= per_page[0] <= per_page[1]:
        raise ValueError(f"digits must be a range 1 <= low <= high, got {per_page}")
    if not 1 <= size_range[0] <= min(size_range[1], side_range[0]):
        raise ValueError(
            f"digit_size {size_range} must be a range whose low end fits the smallest canvas "
            f"{side_range[0]} (larger digits are shrunk to fit small pages)"
        )
    unknown = sorted(set(backgrounds) - set(BACKGROUNDS))
    if not backgrounds or unknown:
        raise ValueError(f"backgrounds must be some of {sorted(BACKGROUNDS)}, got {backgrounds}")
    options = (side_range, per_page, size_range, tuple(backgrounds))
    parts = {
        name: DigitPages(name, lengths[name], seed, DigitImages(idx), *options)
        for name, idx in digit_split_indices(seed).items()
    }
    return generated_splits(parts, _page_stats(seed, *options), channels=1, size=None, unit="pages")


@lru_cache(maxsize=8)
def _page_stats(
    seed: int,
    canvas: tuple[int, int],
    digits: tuple[int, int],
    digit_size: tuple[int, int],
    backgrounds: tuple[str, ...],
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, float]]:
    """Mean/std and the object size range of the first train pages (a few: pages are big)."""
    pool = DigitImages(digit_split_indices(seed)["train"])
    pages = DigitPages("train", _STATS_SAMPLE, seed, pool, canvas, digits, digit_size, backgrounds)
    stats = PixelStats(1)
    placed = []
    for i in range(len(pages)):
        page = pages.page(i)
        stats.update(np.asarray(page.image))
        placed += page.digits
    mean, std = stats.compute()
    return mean, std, object_size_range(placed)
