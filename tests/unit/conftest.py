"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from PIL import Image


@pytest.fixture(scope="module")
def keep_torch_threads() -> Iterator[None]:
    """Handlers set torch's thread count per worker; give it back to the rest of the suite."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def keep_pil_pixel_limit() -> Iterator[None]:
    """Handlers set Pillow's process-wide bomb guard to their `max_pixels`
    (`handlers.request.Limits.apply_to_pil`): right in a worker, which serves one model, but a
    test's tiny limit (100 pixels) would otherwise fail later tests that draw text."""
    limit = Image.MAX_IMAGE_PIXELS
    yield
    Image.MAX_IMAGE_PIXELS = limit
