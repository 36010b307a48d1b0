"""Search-space sampling: unit-cube points (random or Sobol) mapped onto each parameter.

Sampling is two steps so that samplers and parameter kinds combine freely: a sampler draws
`n` points in `[0, 1)^d` (one coordinate per parameter), then each `ParamSpec` maps its
coordinate onto its range (`log_uniform` in log space, `choice` by equal-width bins).

Both samplers are prefix-stable: the first `k` of `n` points do not depend on `n`, so raising
a study's budget and resuming adds trials instead of replacing the finished ones.

Why not a grid: with a grid, `k` values per parameter cost `k^d` trials and every parameter
is only tried at `k` values; random points try a new value of every parameter in every trial
(Bergstra & Bengio 2012), and Sobol points do the same while covering the space more evenly
than independent draws when the budget is small.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .config import ParamSpec

#: Sampled floats keep this many significant digits: `lr 0.00312` reads better in a table
#: than 0.0031187..., and the difference is far below what a search can resolve.
SIGNIFICANT_DIGITS = 3


def unit_points(n: int, dims: int, sampler: str, seed: int) -> np.ndarray:
    """`n` points in `[0, 1)^dims`, fixed by `seed`.

    `sobol` uses a scrambled Sobol sequence (`torch.quasirandom.SobolEngine`; scrambling
    avoids the unscrambled sequence's first point at exactly 0, the lower bound of every
    range). `random` draws independent uniforms.
    """
    if n < 0 or dims < 1:
        raise ValueError(f"need n >= 0 points of >= 1 dimension, got n={n}, dims={dims}")
    if sampler == "sobol":
        if n == 0:  # SobolEngine.draw(0) raises
            return np.empty((0, dims))
        engine = torch.quasirandom.SobolEngine(dimension=dims, scramble=True, seed=seed)
        return engine.draw(n, dtype=torch.float64).numpy()
    if sampler == "random":
        return np.random.default_rng(seed).random((n, dims))
    raise ValueError(f"unknown sampler {sampler!r}; choose sobol or random")


def from_unit(param: ParamSpec, u: float) -> Any:
    """Map `u` in `[0, 1)` onto `param`'s range (floats rounded, then kept inside it)."""
    u = min(max(float(u), 0.0), math.nextafter(1.0, 0.0))
    if param.kind == "choice":
        return param.values[int(u * len(param.values))]
    low, high = param.values
    if param.kind == "int_uniform":
        return int(low + math.floor(u * (high - low + 1)))
    if param.kind == "log_uniform":
        value = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    else:
        value = low + u * (high - low)
    return min(max(_round(value), low), high)


def sample_params(
    params: list[ParamSpec], n: int, sampler: str = "sobol", seed: int = 0
) -> list[dict[str, Any]]:
    """`n` parameter settings `{config key: value}`, in sampling order."""
    points = unit_points(n, len(params), sampler, seed)
    return [{p.key: from_unit(p, u) for p, u in zip(params, row, strict=True)} for row in points]


def _round(value: float) -> float:
    if value == 0:
        return 0.0
    digits = SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(value)))
    return round(value, digits)
