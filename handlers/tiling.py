"""Sliding-window inference: a fully convolutional model over an image of any size.

The image is covered by overlapping tiles (at most `tile` pixels a side); every tile's logits
are weighted by a Gaussian centred on the tile (sigma = `SIGMA_SCALE` of its side, as MONAI's
`sliding_window_inference(mode="gaussian")`), summed into an image-sized buffer and divided by
the summed weights. A tile's border pixels saw zero padding instead of their neighbours, so
they get little weight wherever another tile covers them from its middle: no seams.

Tiles of all the images of one call are gathered, grouped by shape and sent through the
model at most `max_pixels` pixels (whole tiles, at least one) at a time: memory per forward
pass is bounded whatever the image sizes, and time is linear in the pixels (plus the
overlap). An image no larger than one tile is ONE tile, forwarded as it is, with no
weighting: its logits are exactly the whole-image forward pass (the 64 px scenes the
segmenter was trained on take that path).

Pure torch, no handler state: `tests/unit/test_tiling.py` checks it on plain tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

#: Gaussian sigma as a fraction of the tile side (MONAI's default `sigma_scale`).
SIGMA_SCALE = 0.125
#: Floor of a tile's weight, so a pixel only one tile covers (the image's outer border)
#: still gets a finite, well-defined average.
MIN_WEIGHT = 1e-3


@dataclass(frozen=True)
class Tile:
    """One window: rows `y:y+h`, columns `x:x+w` of image `image` (an index in the call)."""

    image: int
    y: int
    x: int
    h: int
    w: int


#: Fitted tile sides are rounded up to a multiple of this (a depth-4 U-Net's stride, so tiles
#: need no padding inside the network).
TILE_MULTIPLE = 16


def fitted(length: int, tile: int, overlap: int) -> int:
    """The tile side actually used along one axis: the fewest windows of at most `tile` that
    cover `length` with at least `overlap`, each made just large enough (rounded up to
    `TILE_MULTIPLE`), so the overlap is not much more than asked for.

    >>> fitted(1024, 256, 32), fitted(64, 256, 32)
    (240, 64)
    """
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"need tile >= 1 and 0 <= overlap < tile, got {tile}, {overlap}")
    if length <= tile:
        return length
    count = math.ceil((length - overlap) / (tile - overlap))
    side = math.ceil((length + (count - 1) * overlap) / count)
    return min(tile, length, -(-side // TILE_MULTIPLE) * TILE_MULTIPLE)


def starts(length: int, tile: int, overlap: int) -> list[int]:
    """Window starts along one axis for windows of `fitted(length, tile, overlap)`: spread
    evenly, the first at 0 and the last ending at `length`.

    >>> starts(64, 256, 32)
    [0]
    >>> starts(1024, 256, 32)
    [0, 196, 392, 588, 784]
    """
    side = fitted(length, tile, overlap)
    if side >= length:
        return [0]
    count = math.ceil((length - overlap) / (side - overlap))
    span = length - side
    return [round(i * span / (count - 1)) for i in range(count)]


def plan(index: int, height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """The tiles covering one `height x width` image (a single tile when it fits)."""
    th, tw = fitted(height, tile, overlap), fitted(width, tile, overlap)
    return [
        Tile(index, y, x, th, tw)
        for y in starts(height, tile, overlap)
        for x in starts(width, tile, overlap)
    ]


@lru_cache(maxsize=16)
def gaussian_weight(height: int, width: int) -> torch.Tensor:
    """`height x width` weights: a separable Gaussian centred on the tile, peak 1."""

    def axis(n: int) -> torch.Tensor:
        centre = (n - 1) / 2
        sigma = max(n * SIGMA_SCALE, 1e-6)
        x = torch.arange(n, dtype=torch.float32)
        return torch.exp(-0.5 * ((x - centre) / sigma) ** 2)

    return (axis(height)[:, None] * axis(width)[None, :]).clamp_min(MIN_WEIGHT)


def tiles_per_forward(height: int, width: int, max_pixels: int) -> int:
    """How many `height x width` tiles one forward pass takes: `max_pixels` worth, at least 1."""
    return max(1, max_pixels // max(1, height * width))


def sliding_window(
    images: Sequence[torch.Tensor],
    forward: Callable[[torch.Tensor], torch.Tensor],
    *,
    tile: int,
    overlap: int,
    max_pixels: int,
    device: torch.device | str = "cpu",
) -> list[torch.Tensor]:
    """Per-image logits `K x H x W` of `forward` run over `C x H x W` `images`, in tiles.

    Args:
        images: CPU tensors, any sizes.
        forward: `N x C x h x w` -> `N x K x h x w` (a fully convolutional model).
        tile: the longest tile side; overlap: the least overlap of neighbouring tiles.
        max_pixels: pixels per forward pass (the memory bound): `tiles_per_forward` tiles.
    """
    tiles = [t for i, image in enumerate(images) for t in plan(i, *image.shape[-2:], tile, overlap)]
    single = [sum(t.image == i for t in tiles) == 1 for i in range(len(images))]
    sums: list[torch.Tensor | None] = [None] * len(images)
    weights = [None if single[i] else torch.zeros(im.shape[-2:]) for i, im in enumerate(images)]
    groups: dict[tuple[int, int, int], list[Tile]] = {}
    for t in tiles:
        groups.setdefault((images[t.image].shape[0], t.h, t.w), []).append(t)
    for (_, h, w), group in groups.items():
        per_forward = tiles_per_forward(h, w, max_pixels)
        for i in range(0, len(group), per_forward):
            chunk = group[i : i + per_forward]
            batch = torch.stack(
                [images[t.image][:, t.y : t.y + h, t.x : t.x + w] for t in chunk]
            ).to(device)
            logits = forward(batch).float().cpu()
            for t, out in zip(chunk, logits, strict=True):
                _accumulate(sums, weights, single, images, t, out)
    results = []
    for total, weight in zip(sums, weights, strict=True):
        assert total is not None, "every image has at least one tile"
        results.append(total if weight is None else total / weight)
    return results


def _accumulate(
    sums: list[torch.Tensor | None],
    weights: list[torch.Tensor | None],
    single: list[bool],
    images: Sequence[torch.Tensor],
    t: Tile,
    out: torch.Tensor,
) -> None:
    """Add one tile's logits (Gaussian-weighted unless it is its image's only tile)."""
    if single[t.image]:
        sums[t.image] = out
        return
    if sums[t.image] is None:
        sums[t.image] = torch.zeros((out.shape[0], *images[t.image].shape[-2:]))
    g = gaussian_weight(t.h, t.w)
    region = (slice(None), slice(t.y, t.y + t.h), slice(t.x, t.x + t.w))
    sums[t.image][region] += out * g  # type: ignore[index]
    weights[t.image][region[1:]] += g  # type: ignore[index]
