"""Ablation groups -> named variants, each a set of config overrides.

An ablation changes one thing at a time against the same base, so its variants differ only in
what the group is about: the `augment:` list (none, all but one, all), the input size, or the
class balance of the training data (and the loss weights that try to undo it). Because every
augmentation is declared in the experiment config, these are config edits, never code edits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.config import Config
from training.data import build_splits, dataset_options

from .config import (
    Ablation,
    AugmentationAblation,
    ImbalanceAblation,
    ResolutionAblation,
    VariantsAblation,
)

#: The dataset options an imbalance ablation sets (see training/data/digits.py).
IMBALANCE_OPTIONS = ("drop_classes", "keep_fraction")


@dataclass
class Variant:
    """One variant of an ablation group: its name and the config overrides it applies."""

    name: str
    overrides: dict[str, Any]


def expand_ablation(ablation: Ablation, base: Config) -> list[Variant]:
    """The variants of `ablation`, in the order they are reported.

    `base` is the experiment the trials start from (study overrides applied): the imbalance
    ablation reads its dataset, split by `data.seed` as training splits it, to weight the
    classes.
    """
    spec = ablation.spec
    if isinstance(spec, AugmentationAblation):
        return augmentation_variants(spec)
    if isinstance(spec, ResolutionAblation):
        return [Variant(f"{h}x{w}", {spec.key: [h, w]}) for h, w in spec.sizes]
    if isinstance(spec, ImbalanceAblation):
        return imbalance_variants(spec, base)
    assert isinstance(spec, VariantsAblation)
    return [Variant(str(name), dict(overrides)) for name, overrides in spec.variants.items()]


def augmentation_variants(spec: AugmentationAblation) -> list[Variant]:
    """`none`, then `no-<label>` for each transform (when there are several), optionally
    `only-<label>` for each, then `all`: the classic leave-one-out ablation."""
    steps = spec.transforms
    variants = [Variant("none", {"augment": []})]
    if len(steps) > 1:
        for left_out in steps:
            kept = [s.as_config() for s in steps if s is not left_out]
            variants.append(Variant(f"no-{left_out.tag}", {"augment": kept}))
        if spec.single:
            variants += [Variant(f"only-{s.tag}", {"augment": [s.as_config()]}) for s in steps]
    variants.append(Variant("all", {"augment": [s.as_config() for s in steps]}))
    return variants


def imbalance_variants(spec: ImbalanceAblation, base: Config) -> list[Variant]:
    """`balanced` (when `baseline`), `imbalanced`, and `imbalanced-weighted`: the same cut
    data with inverse-frequency class weights in the cross-entropy."""
    data = base.data
    missing = [o for o in IMBALANCE_OPTIONS if o not in dataset_options(data.name)]
    if missing:
        raise ValueError(
            f"an imbalance ablation needs a dataset with the options {IMBALANCE_OPTIONS}; "
            f"{data.name!r} lacks {missing} (use `digits`, or a `variants` ablation)"
        )
    options = {"drop_classes": list(spec.classes), "keep_fraction": spec.keep_fraction}
    data_overrides = {f"data.options.{k}": v for k, v in options.items()}
    splits = build_splits(
        data.name,
        root=data.root,
        download=False,
        seed=data.seed,  # the split training uses; `seed` only draws weights and batches
        **{**data.options, **options},
    )
    weights = balanced_class_weights(class_counts(splits.train, len(splits.classes)))
    variants = [Variant("balanced", {})] if spec.baseline else []
    variants += [
        Variant("imbalanced", data_overrides),
        Variant("imbalanced-weighted", {**data_overrides, "loss.class_weights": weights}),
    ]
    return variants


def class_counts(dataset: Any, num_classes: int) -> list[int]:
    """Items per class label of a classification dataset (its `labels` array when it has
    one, which avoids decoding every image)."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [dataset[i][1] for i in range(len(dataset))]
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).tolist()


def balanced_class_weights(counts: Sequence[int]) -> list[float]:
    """`n_items / (n_classes * n_c)` per class (scikit-learn's "balanced"): each class then
    contributes equally to the loss, and the weights average 1 when classes are balanced.

    Raises:
        ValueError: a class has no items (no weight can make it count).
    """
    counts = np.asarray(counts, dtype=np.float64)
    if (counts <= 0).any():
        empty = np.flatnonzero(counts <= 0).tolist()
        raise ValueError(f"classes {empty} have no training items; class weights cannot help")
    weights = counts.sum() / (len(counts) * counts)
    return [round(float(w), 4) for w in weights]
