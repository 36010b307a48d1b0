"""Fixtures of the robustness suite (the session server itself is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from robust_support import Reference, management_auth, model_names, pids_of, png

from model_src import build_eval_transform, load_checkpoint
from training.data import build_splits


@pytest.fixture(scope="session")
def real_digits() -> list[tuple[bytes, int]]:
    """2,000 distinct real digits (test, then val, then train split) as PNGs with labels.

    Distinct images make a swapped answer visible: no two requests share an input.
    """
    splits = build_splits("digits", seed=0)
    out: list[tuple[bytes, int]] = []
    for part in (splits.test, splits.val, splits.train):
        for i in range(len(part)):
            image, label = part[i]
            out.append((png(image), int(label)))
            if len(out) == 2000:
                return out
    return out


@pytest.fixture(scope="session")
def reference(checkpoint_root: Path) -> Reference:
    """The session server's classifier checkpoint, run in-process."""
    model, card = load_checkpoint(checkpoint_root / "digit_classifier" / "1.0" / "model.pt", "cpu")
    return Reference(model, build_eval_transform(card.input), list(card.classes))


@pytest.fixture(scope="session")
def worker_pids(ts_server: Any) -> Callable[[], dict[str, list]]:
    """`worker_pids()`: {model/version: [(pid, status), ...]} for every model served."""

    def snapshot() -> dict[str, list]:
        headers = management_auth(ts_server)
        names = model_names(ts_server.addresses.management, headers)
        return pids_of(ts_server.addresses.management, headers, names)

    return snapshot
