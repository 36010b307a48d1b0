"""Training transforms: masks move with their images, eval is exactly model_src's path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from model_src import InputSpec, build_eval_transform
from training.config import AugmentConfig
from training.transforms import (
    ClassificationTransform,
    SegmentationTransform,
    build_augment,
)

SPEC = InputSpec(size=(16, 24), channels=1, mean=(0.5,), std=(0.25,))


def image_and_mask(seed: int = 0) -> tuple[Image.Image, Image.Image]:
    """A noise image (16 x 24) and the mask that is a function of each pixel's value."""
    pixels = np.random.default_rng(seed).integers(0, 250, size=(16, 24), dtype=np.uint8)
    return Image.fromarray(pixels), Image.fromarray(pixels // 25)  # classes 0..9


def augment(*steps: tuple[str, dict], task: str = "segmentation"):
    return build_augment([AugmentConfig(name, kwargs) for name, kwargs in steps], task)


def test_geometric_augmentation_moves_image_and_mask_together() -> None:
    pipeline = augment(
        ("RandomAffine", {"degrees": 30, "translate": [0.2, 0.2], "interpolation": "nearest"}),
        ("RandomHorizontalFlip", {"p": 1.0}),
    )
    transform = SegmentationTransform(SPEC, pipeline)
    for seed in range(5):
        torch.manual_seed(seed)
        image, mask = transform._augment(*image_and_mask(seed))
        moved = np.asarray(image) // 25
        assert np.array_equal(np.asarray(mask), moved)  # every pixel kept its label
        assert not np.array_equal(np.asarray(mask), np.asarray(image_and_mask(seed)[1]))


def test_photometric_augmentation_leaves_the_mask_alone() -> None:
    transform = SegmentationTransform(SPEC, augment(("ColorJitter", {"brightness": 0.8})))
    image, mask = image_and_mask()
    _, new_mask = transform._augment(image, mask)
    assert np.array_equal(np.asarray(new_mask), np.asarray(mask))


def test_segmentation_output_is_eval_tensor_and_index_mask() -> None:
    image, mask = image_and_mask()
    x, y = SegmentationTransform(SPEC)(image, mask)
    assert torch.equal(x, build_eval_transform(SPEC)(image))
    assert y.dtype == torch.int64 and y.shape == (16, 24)
    assert torch.equal(y, torch.from_numpy(np.asarray(mask, dtype=np.int64)))


def test_classification_eval_path_is_exactly_model_src() -> None:
    image, _ = image_and_mask()
    x, label = ClassificationTransform(SPEC)(image, 3)
    assert torch.equal(x, build_eval_transform(SPEC)(image)) and label == 3


@pytest.mark.parametrize(
    ("name", "task", "message"),
    [
        ("Normalize", "classification", "come from the input spec"),
        ("ToTensor", "classification", "come from the input spec"),
        ("RandomErasing", "segmentation", "not known to be safe for masks"),
        ("NoSuchTransform", "classification", "not a torchvision.transforms.v2 transform"),
        ("InterpolationMode", "classification", "not a torchvision.transforms.v2 transform"),
    ],
)
def test_unsuitable_augmentations_are_refused(name: str, task: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        augment((name, {}), task=task)


def test_bad_augmentation_arguments_name_the_transform() -> None:
    with pytest.raises(ValueError, match="RandomAffine"):
        augment(("RandomAffine", {"degree": 3}))


def test_no_augmentation_is_none() -> None:
    assert build_augment([], "classification") is None
