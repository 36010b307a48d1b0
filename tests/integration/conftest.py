"""Images and the demo proxy for the integration tests (the server fixtures are in
tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest
from imaging import png
from PIL import Image

from tools.demo.server import DemoServer, DemoSettings, max_request_size, running_demo
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


@pytest.fixture(scope="module")
def demo(ts_server: object) -> Iterator[DemoServer]:
    """The demo page's proxy in front of the session's TorchServe (one per test module)."""
    config = ts_server.spec.config
    settings = DemoSettings(config, ts_server.key_file, max_body=max_request_size(config))
    with running_demo(settings) as server:
        yield server
