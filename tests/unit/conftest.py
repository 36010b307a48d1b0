"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module")
def keep_torch_threads() -> Iterator[None]:
    """Handlers set torch's thread count per worker; give it back to the rest of the suite."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
