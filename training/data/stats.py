"""Per-channel mean/std of pixel data: the defaults a dataset hands to a model card.

Statistics come from the TRAIN split only (val/test must not leak into preprocessing) and are
rounded to 4 decimals so a card shows a stable, readable number. Pixels are counted in a
256-bin histogram per channel, which is exact for uint8 data, needs no float copy of the
images, and lets a sample of variable-size images be added one at a time.
"""

from __future__ import annotations

import numpy as np

DECIMALS = 4


class PixelStats:
    """Accumulates uint8 pixels per channel; `compute()` gives mean and std in [0, 1] units."""

    def __init__(self, channels: int) -> None:
        self.hist = np.zeros((channels, 256), dtype=np.int64)

    def update(self, pixels: np.ndarray) -> None:
        """Add uint8 pixels shaped `(..., channels)`, or any shape when there is one channel."""
        if pixels.dtype != np.uint8:
            raise TypeError(f"PixelStats counts uint8 pixels, got {pixels.dtype}")
        channels = self.hist.shape[0]
        if channels == 1:
            self.hist[0] += np.bincount(pixels.reshape(-1), minlength=256)
            return
        if pixels.shape[-1] != channels:
            raise ValueError(f"expected {channels} channels last, got shape {pixels.shape}")
        for c in range(channels):
            self.hist[c] += np.bincount(pixels[..., c].reshape(-1), minlength=256)

    def compute(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        values = np.arange(256, dtype=np.float64) / 255.0
        total = self.hist.sum(axis=1)
        if (total == 0).any():
            raise ValueError("no pixels were counted")
        mean = (self.hist * values).sum(axis=1) / total
        var = (self.hist * values**2).sum(axis=1) / total - mean**2
        std = np.sqrt(np.maximum(var, 0.0))
        # A constant image has std 0, which no normaliser accepts: fall back to 1 (no scaling).
        # "0" includes float residue (a constant 90 gives var ~1e-17) that rounds to 0.0.
        std = np.where(std >= 0.5 * 10.0**-DECIMALS, std, 1.0)
        return _rounded(mean), _rounded(std)


def pixel_stats(pixels: np.ndarray, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std of one uint8 array (e.g. a whole split held in memory)."""
    stats = PixelStats(channels)
    stats.update(pixels)
    return stats.compute()


def imagenet_stats() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """ImageNet mean/std, from timm (the source the pretrained backbones were trained with)."""
    from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    return tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)


def _rounded(values: np.ndarray) -> tuple[float, ...]:
    return tuple(round(float(v), DECIMALS) for v in values)
