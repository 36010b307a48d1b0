"""Draw one digit scene: real digits pasted on a textured canvas, with its class-index mask.

Pure numpy + PIL and fast (a fraction of a millisecond for 64x64), so scenes are generated on
the fly instead of stored. The caller passes the random generator and the pool of digits, which
keeps this function free of dataset concerns: the `digit_scenes` dataset feeds it the digits of
the matching split, a test or a pipeline check feeds it the exact digits it wants to find.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from PIL import Image

#: A pixel belongs to a digit's mask where the scaled digit's ink is above this fraction of 255:
#: the faint anti-aliased rim stays background, so the mask follows the visible strokes.
STROKE_THRESHOLD = 0.35
#: Ink below this fraction is cropped away before pasting (keeps the blend soft at the rim).
_INK = 0.02


class PlacedDigit(NamedTuple):
    """One pasted digit: its label, its stroke box `(x0, y0, x1, y1)` (x1, y1 exclusive) and
    its index in the pool it came from."""

    label: int
    bbox: tuple[int, int, int, int]
    source: int


class Scene(NamedTuple):
    """`image` (mode "L" or "RGB"), `mask` (mode "L": 0 background, digit d -> d + 1) and the
    digits placed, in paste order (a later digit wins where strokes touch)."""

    image: Image.Image
    mask: Image.Image
    digits: list[PlacedDigit]


def digit_scene(
    rng: np.random.Generator | int | Sequence[int],
    images: np.ndarray,
    labels: np.ndarray | Sequence[int],
    size: tuple[int, int] = (64, 64),
    *,
    rgb: bool = False,
    n_digits: int | tuple[int, int] | None = (1, 3),
    digit_size: tuple[int, int] = (20, 36),
    max_overlap: float = 0.1,
    tries: int = 20,
    background: str = "texture",
) -> Scene:
    """Paste digits from `images`/`labels` (a pool, uint8 `(N, h, w)`) on a textured canvas.

    Args:
        rng: a generator or a seed for one (scenes are reproducible from their seed).
        size: canvas `(height, width)`.
        n_digits: how many to paste, an int or an inclusive `(low, high)` range of random
            picks from the pool; None pastes every pool digit once, in order (a scene whose
            digits the caller chose).
        digit_size: inclusive range of the pasted side length in pixels.
        max_overlap: the largest allowed intersection of two stroke boxes, as a fraction of
            the smaller box. A digit that finds no such place in `tries` positions is skipped
            (and absent from `Scene.digits`), so every listed digit keeps visible strokes.
        background: "texture" (blobs, gradient, stripes, speckle: the scenes'), "noise"
            (black with Gaussian noise and speckle) or "black" (a clean black canvas).

    Raises:
        ValueError: an empty pool, or digits that cannot fit on the canvas.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    height, width = size
    labels = np.asarray(labels)
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"need a non-empty pool of digits with labels, got {len(images)}")
    if not 1 <= digit_size[0] <= digit_size[1] <= min(height, width):
        raise ValueError(f"digit_size {digit_size} must fit the {height}x{width} canvas")
    channels = 3 if rgb else 1
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {sorted(BACKGROUNDS)}, got {background!r}")
    canvas = BACKGROUNDS[background](rng, height, width, channels)
    mask = np.zeros((height, width), dtype=np.uint8)
    placed: list[PlacedDigit] = []
    for source in _pick(rng, len(images), n_digits):
        alpha = _scaled_ink(images[source], int(rng.integers(digit_size[0], digit_size[1] + 1)))
        stroke = alpha > STROKE_THRESHOLD
        if not stroke.any():
            continue
        box = _box(stroke)
        spot = _find_spot(rng, alpha.shape, box, (height, width), placed, max_overlap, tries)
        if spot is None:
            continue
        oy, ox = spot
        label = int(labels[source])
        _blend(canvas, alpha, oy, ox, _ink_colour(rng, channels))
        region = mask[oy : oy + alpha.shape[0], ox : ox + alpha.shape[1]]
        region[stroke] = label + 1
        x0, y0, x1, y1 = box
        placed.append(PlacedDigit(label, (ox + x0, oy + y0, ox + x1, oy + y1), int(source)))
    pixels = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels if rgb else pixels[..., 0], "RGB" if rgb else "L")
    return Scene(image, Image.fromarray(mask, "L"), placed)


def _pick(
    rng: np.random.Generator, pool: int, n_digits: int | tuple[int, int] | None
) -> np.ndarray:
    if n_digits is None:
        return np.arange(pool)
    low, high = (n_digits, n_digits) if isinstance(n_digits, int) else n_digits
    return rng.integers(0, pool, size=int(rng.integers(low, high + 1)))


def _scaled_ink(digit: np.ndarray, side: int) -> np.ndarray:
    """The digit resized to `side` px as ink in [0, 1], cropped to where there is ink."""
    small = Image.fromarray(np.ascontiguousarray(digit)).resize(
        (side, side), Image.Resampling.BILINEAR
    )
    alpha = np.asarray(small, dtype=np.float32) / 255.0
    rows, cols = np.nonzero(alpha > _INK)
    if len(rows) == 0:
        return alpha[:0, :0]
    return alpha[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _box(stroke: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(stroke.any(axis=1))
    cols = np.flatnonzero(stroke.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _find_spot(
    rng: np.random.Generator,
    shape: tuple[int, int],
    box: tuple[int, int, int, int],
    canvas: tuple[int, int],
    placed: list[PlacedDigit],
    max_overlap: float,
    tries: int,
) -> tuple[int, int] | None:
    """A random top-left corner where the stroke box overlaps no placed one too much."""
    h, w = shape
    if h > canvas[0] or w > canvas[1]:
        return None
    x0, y0, x1, y1 = box
    area = (x1 - x0) * (y1 - y0)
    for _ in range(tries):
        oy = int(rng.integers(0, canvas[0] - h + 1))
        ox = int(rng.integers(0, canvas[1] - w + 1))
        ax0, ay0, ax1, ay1 = ox + x0, oy + y0, ox + x1, oy + y1
        fits = True
        for other in placed:
            bx0, by0, bx1, by1 = other.bbox
            inter = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(0, min(ay1, by1) - max(ay0, by0))
            if inter > max_overlap * min(area, (bx1 - bx0) * (by1 - by0)):
                fits = False
                break
        if fits:
            return oy, ox
    return None


def _ink_colour(rng: np.random.Generator, channels: int) -> np.ndarray:
    """Bright ink (the background stays darker), a random colour when the scene is RGB."""
    if channels == 1:
        return np.array([rng.uniform(190.0, 255.0)], dtype=np.float32)
    colour = rng.uniform(120.0, 255.0, size=3)
    colour[rng.integers(0, 3)] = rng.uniform(220.0, 255.0)  # one strong channel: never dull
    return colour.astype(np.float32)


def _blend(canvas: np.ndarray, alpha: np.ndarray, oy: int, ox: int, colour: np.ndarray) -> None:
    region = canvas[oy : oy + alpha.shape[0], ox : ox + alpha.shape[1]]
    a = alpha[..., None]
    region += a * (colour - region)


def _black(rng: np.random.Generator, height: int, width: int, channels: int) -> np.ndarray:
    return np.zeros((height, width, channels), dtype=np.float32)


def _noise(rng: np.random.Generator, height: int, width: int, channels: int) -> np.ndarray:
    """Black with sensor-like noise and a few bright specks (scanner dust)."""
    gray = np.abs(rng.normal(0.0, rng.uniform(2.0, 12.0), (height, width)))
    speckle = rng.random((height, width)) < rng.uniform(0.0, 0.005)
    gray[speckle] += rng.uniform(40.0, 100.0)
    gray = np.clip(gray, 0.0, 130.0).astype(np.float32)
    return np.repeat(gray[..., None], channels, axis=2)


@lru_cache(maxsize=8)
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return yy / max(height - 1, 1), xx / max(width - 1, 1)


def _background(rng: np.random.Generator, height: int, width: int, channels: int) -> np.ndarray:
    """A dark-ish texture, different per scene: smooth blobs + gradient + stripes + speckle.

    Values stay below ~130 of 255 while ink is >= ~120 at the mask threshold and mostly near
    its peak, so digits remain visible and the segmenter must learn shapes, not a threshold.
    """
    yy, xx = _grid(height, width)
    cells = int(rng.integers(3, 7))
    coarse = Image.fromarray(rng.random((cells, cells), dtype=np.float32), "F")
    blobs = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC))
    angle = rng.uniform(0.0, 2.0 * math.pi)
    gradient = xx * math.cos(angle) + yy * math.sin(angle)
    angle = rng.uniform(0.0, math.pi)
    stripes = np.sin(
        2.0 * math.pi * rng.uniform(2.0, 10.0) * (xx * math.cos(angle) + yy * math.sin(angle))
        + rng.uniform(0.0, 2.0 * math.pi)
    )
    w_blobs, w_grad, w_stripes = rng.dirichlet((2.0, 1.5, 0.7))
    texture = w_blobs * blobs + w_grad * gradient + w_stripes * 0.5 * stripes
    texture -= texture.min()
    texture /= max(float(texture.max()), 1e-6)
    level, contrast = rng.uniform(0.0, 45.0), rng.uniform(10.0, 60.0)
    gray = level + contrast * texture + rng.normal(0.0, rng.uniform(1.0, 7.0), (height, width))
    speckle = rng.random((height, width)) < rng.uniform(0.0, 0.02)
    gray[speckle] += rng.uniform(30.0, 80.0)
    gray = np.clip(gray, 0.0, 130.0).astype(np.float32)
    if channels == 1:
        return gray[..., None].copy()
    tint = rng.uniform(0.4, 1.0, size=3).astype(np.float32)
    return gray[..., None] * tint


BACKGROUNDS = {"texture": _background, "noise": _noise, "black": _black}
