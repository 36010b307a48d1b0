"""At which scale a segmenter sees an image: the card's object sizes against the image's.

A segmenter learns objects of some size (the digit segmenter: digits 15 to 26 px on 64 px
scenes). It is fully convolutional, so it works on any canvas, but only for objects near that
size: a 512 px page squeezed into 64 px shows it 3 px digits. So the handler resizes the input
by `scale` = (training object size) / (the image's object size) and runs the model in tiles
over the result (`handlers.tiling`); the mask is mapped back to the original pixels.

The image's object size comes from the request (`object_size`, pixels) or is found
automatically by the model itself, in at most `MAX_PASSES` passes:

1. a coarse pass with the image reduced to at most `COARSE_SIDE` px (never enlarged);
2. the objects it finds are measured (the median of their boxes' longer sides). If that is
   within the training range, this pass is the answer; otherwise the next pass runs at the
   scale that brings the median to the typical training size. Objects that looked too small
   after a reduction are first looked at at their own size (scale 1), because a model
   cannot measure what it cannot see; a pass that finds nothing after a reduction also
   goes to scale 1.

An image no larger than the card's input (a 64 px scene) is taken at scale 1 in one pass,
exactly the forward pass of training (and of the handler before scales existed). A 640 px
page of 56 px digits is answered by its 256 px coarse pass. A page of 28 px digits needs its
coarse pass and one at scale 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model_src import InputSpec

#: Object sizes assumed for cards written before `input.object_size` existed, as fractions of
#: the input's shorter side: what the 64 px digit scenes hold (digits' longer side 15 to
#: 26 px, 5th to 95th percentile of the train scenes).
DEFAULT_OBJECT_FRACTION = (0.23, 0.41)
#: The coarse pass sees the image with its longer side at most this many pixels.
COARSE_SIDE = 256
MAX_PASSES = 3
#: A median object size within [low / TOLERANCE, high * TOLERANCE] counts as in range: the
#: model's components are a little smaller or larger than the training boxes they learnt.
TOLERANCE = 1.25
#: Changes of scale smaller than this factor are not worth another pass.
MIN_STEP = 1.15
#: Bounds of any scale (1/16 reduces a 4000 px photo to 250 px; 4 enlarges 4 px objects).
MIN_SCALE, MAX_SCALE = 1 / 16, 4.0
#: Components smaller than this (pixels at the pass's scale) are specks, not objects.
MIN_PROBE_AREA = 4


@dataclass(frozen=True)
class ObjectScale:
    """The training objects' size range (pixels, longer box side) and the scales it implies."""

    low: float
    high: float

    @classmethod
    def from_spec(cls, spec: InputSpec) -> ObjectScale:
        if spec.object_size is not None:
            return cls(*spec.object_size)
        side = min(spec.size)
        return cls(DEFAULT_OBJECT_FRACTION[0] * side, DEFAULT_OBJECT_FRACTION[1] * side)

    @property
    def typical(self) -> float:
        """The size a scale maps objects to: the middle of the range (geometric)."""
        return math.sqrt(self.low * self.high)

    def fits(self, size: float) -> bool:
        return self.low / TOLERANCE <= size <= self.high * TOLERANCE

    def for_object_size(self, object_size: float) -> float:
        """The scale that maps objects of `object_size` px to the typical training size."""
        return self.typical / object_size

    def next_scale(self, scale: float, sizes: Sequence[float]) -> float | None:
        """After a pass at `scale` that found objects of `sizes` (px at that scale): the scale
        of the next pass, or None when this pass is the answer."""
        if not sizes:
            return 1.0 if scale < 1.0 else None
        median = float(np.median(sizes))
        if self.fits(median):
            return None
        wanted = scale * self.typical / median
        if median < self.low and scale < 1.0:
            wanted = min(wanted, 1.0)  # see them at their own size before extrapolating
        wanted = min(max(wanted, MIN_SCALE), MAX_SCALE)
        if max(wanted / scale, scale / wanted) < MIN_STEP:
            return None
        return wanted


def coarse_scale(width: int, height: int) -> float:
    """The first automatic pass: reduce to `COARSE_SIDE` px at most, never enlarge."""
    return min(1.0, COARSE_SIDE / max(width, height))


def within_budget(scale: float, width: int, height: int, max_pixels: int) -> float:
    """`scale`, lowered where needed so the resized image holds at most `max_pixels`."""
    most = math.sqrt(max_pixels / max(1, width * height))
    return min(scale, most)
