"""`Splits`, the one shape every dataset takes, and the registry that builds them by name.

Training only ever calls `build_splits(name, root=..., download=..., seed=..., **options)` with
the values of an experiment's YAML file, so the registry checks the options before building:
an unknown dataset name raises `ValueError` listing the valid ones, an option the dataset does
not take raises `TypeError` listing the ones it does (a typo in a config must not be ignored).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from torch.utils.data import Dataset

#: Mask value meaning "no class here, leave this pixel out of the loss and the metrics".
#: The usual PyTorch choice (`CrossEntropyLoss(ignore_index=255)`), and it fits a mode-"L" mask.
IGNORE_INDEX = 255

TASKS = ("classification", "segmentation")


@dataclass
class Splits:
    """A dataset's three splits and the facts a model card needs about them.

    Items are RAW: `(PIL.Image, int)` for classification, `(PIL.Image, PIL.Image mask of mode
    "L" holding class indices)` for segmentation. Augmentation and the eval transform belong to
    training, so one dataset serves any model size and preprocessing policy.

    Attributes:
        size: native `(height, width)`, or None when images differ in size.
        mean, std: per-channel defaults in [0, 1] units for this data (how they were obtained
            is in `info["stats"]`).
        ignore_index: the mask value to leave out of losses and metrics, None if masks never
            hold one.
        object_size: segmentation: the `[low, high]` size of the objects in pixels (longer box
            side, 5th-95th percentile), written to the model card as `input.object_size`;
            None when unknown.
        info: JSON-able facts for the model card's `dataset` entry (name, seed, options, ...).
    """

    train: Dataset
    val: Dataset
    test: Dataset
    classes: list[str]
    task: str
    channels: int
    size: tuple[int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    ignore_index: int | None = None
    object_size: tuple[float, float] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"need one mean and std per channel, got {self.mean} {self.std}")


#: A factory takes `(root, download, seed, **options)` and returns the splits.
Factory = Callable[..., Splits]
F = TypeVar("F", bound=Factory)

_REGISTRY: dict[str, Factory] = {}
_COMMON = ("root", "download", "seed")


def register_dataset(name: str) -> Callable[[F], F]:
    """Register `fn(root: Path, download: bool, seed: int, **options) -> Splits` as `name`."""

    def decorator(fn: F) -> F:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is registered twice")
        params = list(inspect.signature(fn).parameters)
        if tuple(params[:3]) != _COMMON:
            raise TypeError(f"dataset factory {fn.__name__} must start with {_COMMON}")
        _REGISTRY[name] = fn
        return fn

    return decorator


def list_datasets() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(_REGISTRY)


def dataset_options(name: str) -> dict[str, Any]:
    """The options dataset `name` takes, with their defaults (for docs and config checks)."""
    params = list(inspect.signature(_factory(name)).parameters.values())[3:]
    return {p.name: p.default for p in params}


def build_splits(
    name: str, *, root: str | Path = "data", download: bool = False, seed: int = 0, **options: Any
) -> Splits:
    """Build dataset `name`'s train/val/test splits.

    Args:
        name: a registered dataset (`list_datasets()`).
        root: where the files live (bundled datasets ignore it).
        download: let torchvision fetch missing files (needs internet).
        seed: fixes every random choice (which items go to val/test, generated scenes).
        **options: dataset-specific, see `dataset_options(name)`.

    Raises:
        ValueError: unknown `name`, or an option value the dataset rejects.
        TypeError: an option the dataset does not take.
        FileNotFoundError: the data is missing and `download` is False (the message names the
            expected layout).
    """
    factory = _factory(name)
    valid = dataset_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"dataset {name!r} does not take option(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(valid) or 'none'}"
        )
    splits = factory(Path(root), bool(download), int(seed), **options)
    splits.info = {"name": name, "seed": int(seed), "options": dict(options), **splits.info}
    return splits


def _factory(name: str) -> Factory:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of {', '.join(list_datasets())}"
        ) from None
