"""Reading user images: the same mode conversion the served model applies, and sampled stats.

Folder datasets hold photos of any mode (palette, 16-bit, CMYK, EXIF-rotated). Converting them
with `model_src.to_model_mode`, the function the handlers call on request images, makes the
model train on exactly what it will be served.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from model_src import to_model_mode

from .stats import PixelStats

_EXIF_ORIENTATION = 0x0112

#: Training images read for a folder dataset's mean/std: cheap, and enough for defaults.
STATS_SAMPLE = 64


def load_image(path: str | Path, channels: int) -> Image.Image:
    """Decode `path` to an upright mode "L" (1 channel) or "RGB" (3) image, file closed."""
    with Image.open(path) as img:
        img.load()
        out = to_model_mode(img, channels)
        return out.copy() if out is img else out


def sample_stats(
    paths: Sequence[str | Path], channels: int, seed: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std of up to `STATS_SAMPLE` images picked from `paths` with `seed`."""
    return sample_stats_of(lambda k: load_image(paths[k], channels), len(paths), channels, seed)


def sample_stats_of(
    image_at: Callable[[int], Image.Image], n: int, channels: int, seed: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std of up to `STATS_SAMPLE` of `n` images, `image_at(k)` already in model mode."""
    rng = np.random.default_rng(seed)
    picks = rng.permutation(n)[:STATS_SAMPLE]
    stats = PixelStats(channels)
    for k in sorted(picks):
        stats.update(np.asarray(image_at(int(k))))
    return stats.compute()


def upright_size(path: str | Path) -> tuple[int, int]:
    """`(width, height)` after EXIF rotation, read from the header only (no decoding)."""
    with Image.open(path) as img:
        width, height = img.size
        rotated = img.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
    return (height, width) if rotated else (width, height)
