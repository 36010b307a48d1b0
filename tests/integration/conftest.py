"""Images for the integration tests (the server fixtures are in tests/conftest.py)."""

from __future__ import annotations

from types import ModuleType

import pytest
from imaging import png
from PIL import Image

from training.data import build_splits


@pytest.fixture(scope="session")
def digits() -> list[tuple[bytes, str]]:
    """20 held-out MNIST-5k digits as PNG files, with their labels."""
    splits = build_splits("digits", seed=0)
    return [
        (png(image), splits.classes[label]) for image, label in (splits.test[i] for i in range(20))
    ]


@pytest.fixture(scope="session")
def scene(tiny_models: ModuleType) -> tuple[bytes, list[str]]:
    """A generated 64x64 scene (PNG) and its digits left to right."""
    image, labels = tiny_models.scene_with_digits(seed=0, index=0)
    return png(image), labels


@pytest.fixture(scope="session")
def blank_png() -> bytes:
    """A scene with nothing in it."""
    return png(Image.new("L", (64, 64), 0))


@pytest.fixture(scope="session")
def garbage() -> bytes:
    return b"this is not an image\n"
