"""Seeded, stratified choices of which items go to which split.

Every split in cvserve is carved with `carve()`: it orders the items so that each prefix holds
every class in proportion (to within one item), then cuts the order into consecutive pieces.
That gives exactly stratified val/test sets (MNIST-5k: 50 digits per class) without a
per-dataset splitting routine, and the same seed always gives the same split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_order(labels: Sequence[int] | np.ndarray, seed: int) -> np.ndarray:
    """A permutation of `range(len(labels))` whose every prefix is class-balanced.

    Each item's key is `(rank within its class + 0.5) / class size`, with ranks drawn at random:
    sorting by key interleaves the classes in proportion. Ties between classes are broken by a
    random class order so the remainders do not always favour the low labels.
    """
    labels = np.asarray(labels)
    n = len(labels)
    rng = np.random.default_rng(seed)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    perm = rng.permutation(n)
    by_class = perm[np.argsort(inverse[perm], kind="stable")]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(n, dtype=np.int64)
    rank[by_class] = np.arange(n) - starts[inverse[by_class]]
    key = (rank + 0.5) / counts[inverse]
    tie = rng.permutation(len(counts))[inverse]
    return np.lexsort((tie, key))


def carve(labels: Sequence[int] | np.ndarray, seed: int, *sizes: int) -> list[np.ndarray]:
    """Cut the items into pieces of `sizes` and the rest, each stratified, each sorted.

    `carve(labels, seed, 500, 500)` returns `[first 500, next 500, the rest]`.

    Raises:
        ValueError: a negative size, or sizes that leave nothing for the rest.
    """
    n = len(labels)
    if any(s < 0 for s in sizes) or sum(sizes) >= n:
        raise ValueError(f"cannot carve pieces of {list(sizes)} out of {n} items and keep a rest")
    order = stratified_order(labels, seed)
    cuts = np.cumsum(sizes)
    return [np.sort(piece) for piece in np.split(order, cuts)]


def fraction_size(n: int, fraction: float) -> int:
    """How many of `n` items a fraction in [0, 1) means: rounded, at least 1 when > 0."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"a split fraction must be in [0, 1), got {fraction}")
    return max(1, round(n * fraction)) if fraction > 0 and n > 1 else 0
