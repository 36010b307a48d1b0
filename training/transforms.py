"""Training-time transforms: augmentation, then THE eval transform from `model_src`.

Train items go through the configured `torchvision.transforms.v2` augmentations and then
`model_src.build_eval_transform(spec)`; eval items go through the eval transform only, the
very function the handlers call. Normalisation therefore lives in one place (the card's
`InputSpec`), and augmentations must not convert or normalise.

For segmentation, augmentations are applied jointly to the image and its mask (wrapped as a
`tv_tensors.Mask`, so geometric transforms move both, masks with nearest-neighbour, and
photometric transforms leave the mask alone). Only transforms known to be mask-safe are
accepted there; the mask is then fitted with `model_src.fit_mask` (the image's geometry).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from model_src import EvalTransform, InputSpec, build_eval_transform, fit_mask

from .config import AugmentConfig

#: Geometric transforms that move image and mask together (masks resampled nearest).
MASK_GEOMETRIC = frozenset(
    {
        "CenterCrop",
        "ElasticTransform",
        "Pad",
        "RandomAffine",
        "RandomCrop",
        "RandomHorizontalFlip",
        "RandomPerspective",
        "RandomResize",
        "RandomResizedCrop",
        "RandomRotation",
        "RandomVerticalFlip",
        "RandomZoomOut",
        "Resize",
    }
)
#: Photometric transforms that change the image only (v2 passes masks through untouched).
IMAGE_ONLY = frozenset(
    {
        "ColorJitter",
        "GaussianBlur",
        "Grayscale",
        "Identity",
        "RandomAdjustSharpness",
        "RandomAutocontrast",
        "RandomChannelPermutation",
        "RandomEqualize",
        "RandomGrayscale",
        "RandomInvert",
        "RandomPhotometricDistort",
        "RandomPosterize",
        "RandomSolarize",
    }
)
#: Steps the eval transform owns (conversion, normalisation) or that YAML cannot express.
NOT_AUGMENTATIONS = frozenset(
    {
        "Compose",
        "ConvertImageDtype",
        "Lambda",
        "Normalize",
        "PILToTensor",
        "RandomApply",
        "RandomChoice",
        "RandomOrder",
        "ToDtype",
        "ToImage",
        "ToPILImage",
        "ToPureTensor",
        "ToTensor",
    }
)


def build_augment(steps: list[AugmentConfig], task: str) -> v2.Compose | None:
    """The configured augmentations as one v2 pipeline (None when there are none).

    Raises:
        ValueError: an unknown transform name, one that belongs to the eval transform, one
            not safe for masks in a segmentation run, or arguments it does not take.
    """
    if not steps:
        return None
    return v2.Compose([_build_step(step, task) for step in steps])


def _build_step(step: AugmentConfig, task: str) -> v2.Transform:
    name = step.name
    cls = getattr(v2, name, None)
    if not (isinstance(cls, type) and issubclass(cls, v2.Transform)):
        raise ValueError(f"augment {name!r} is not a torchvision.transforms.v2 transform")
    if name in NOT_AUGMENTATIONS:
        raise ValueError(
            f"augment {name!r} is not allowed: conversion and normalisation come from the "
            "input spec (model_src.build_eval_transform); list plain augmentations only"
        )
    if task == "segmentation" and name not in MASK_GEOMETRIC | IMAGE_ONLY:
        raise ValueError(
            f"augment {name!r} is not known to be safe for masks; for segmentation use one of "
            f"{', '.join(sorted(MASK_GEOMETRIC | IMAGE_ONLY))}"
        )
    try:
        return cls(**step.kwargs)
    except TypeError as exc:
        raise ValueError(f"augment {name!r}: bad arguments {step.kwargs}: {exc}") from exc


class ClassificationTransform:
    """`(PIL image, label)` -> `(normalised tensor, label)`; augments first when given.

    A class, not a closure, so DataLoader worker processes can pickle it.
    """

    def __init__(self, spec: InputSpec, augment: v2.Compose | None = None) -> None:
        self.eval = build_eval_transform(spec)
        self.augment = augment

    def __call__(self, image: Image.Image, label: int) -> tuple[torch.Tensor, int]:
        if self.augment is not None:
            image = self.augment(image)
        return self.eval(image), int(label)


class SegmentationTransform:
    """`(PIL image, PIL mask "L")` -> `(normalised tensor, (H, W) int64 class indices)`."""

    def __init__(self, spec: InputSpec, augment: v2.Compose | None = None) -> None:
        self.spec = spec
        self.eval: EvalTransform = build_eval_transform(spec)
        self.augment = augment

    def __call__(self, image: Image.Image, mask: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        if self.augment is not None:
            image, mask = self._augment(image, mask)
        target = np.asarray(fit_mask(mask, self.spec), dtype=np.int64)
        return self.eval(image), torch.from_numpy(target.copy())

    def _augment(self, image: Image.Image, mask: Image.Image) -> tuple[Image.Image, Image.Image]:
        wrapped = tv_tensors.Mask(torch.from_numpy(np.asarray(mask, dtype=np.uint8).copy()))
        image, wrapped = self.augment(image, wrapped)
        return image, Image.fromarray(wrapped.numpy().astype(np.uint8))  # 2-D uint8: mode L


class TransformedDataset(Dataset):
    """A raw dataset whose items pass through `transform(*item)`."""

    def __init__(self, base: Dataset, transform: Any) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.transform(*self.base[index])


def pair_transform(
    task: str, spec: InputSpec, augment: v2.Compose | None = None
) -> ClassificationTransform | SegmentationTransform:
    """The item transform of a task; without `augment` it is exactly the eval path."""
    if task == "classification":
        return ClassificationTransform(spec, augment)
    return SegmentationTransform(spec, augment)
