"""Versions: `make archive VERSION=2.0` output registers from the store, serves, is promoted
and rolled back, and is unregistered; workers scale (docs/api.md, Versions)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def version_2_archive(tiny_models, checkpoint_root, model_store) -> Path:
    """`python -m tools.archive --version 2.0` after training a 2.0 classifier."""
    tiny_models.train_classifier(
        checkpoint_root / "digit_classifier" / "2.0" / "model.pt", version="2.0", seed=1
    )
    cmd = [
        sys.executable,
        "-m",
        "tools.archive",
        "--version",
        "2.0",
        "--workers",
        "1",
        "--checkpoint-root",
        str(checkpoint_root),
        "--model-store",
        str(model_store),
        "--no-workflows",
    ]
    first = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    archive = model_store / "digit_classifier-2.0.mar"
    assert f"built {archive}" in first.stdout
    again = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert f"unchanged {archive}" in again.stdout  # fast when nothing changed
    return archive


def versions(client, model: str) -> set[str]:
    return {d["modelVersion"] for d in client.describe(model, "all")}


def wait_ready(client, model: str, workers: int, timeout: float = 120) -> list[dict]:
    """Workers of `model` once `workers` of them are READY (scaling settles asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        (desc,) = client.describe(model)
        ready = [w for w in desc["workers"] if w["status"] == "READY"]
        if len(ready) == len(desc["workers"]) == workers or time.monotonic() > deadline:
            return desc["workers"]
        time.sleep(0.5)


def test_register_promote_roll_back_unregister(ts_client, version_2_archive, digits) -> None:
    data = digits[0][0]
    ts_client.register(version_2_archive.name, initial_workers=1)
    try:
        assert versions(ts_client, "digit_classifier") == {"1.0", "2.0"}
        assert ts_client.predict(data, "digit_classifier")["version"] == "1.0"  # still default
        assert ts_client.predict(data, "digit_classifier", version="2.0")["version"] == "2.0"
        (desc,) = ts_client.describe("digit_classifier", "2.0")
        assert all(w["status"] == "READY" for w in desc["workers"])

        ts_client.set_default("digit_classifier", "2.0")  # promote
        assert ts_client.predict(data, "digit_classifier")["version"] == "2.0"
        ts_client.set_default("digit_classifier", "1.0")  # roll back
        assert ts_client.predict(data, "digit_classifier")["version"] == "1.0"
    finally:
        ts_client.set_default("digit_classifier", "1.0")
        ts_client.unregister("digit_classifier", "2.0")
    assert versions(ts_client, "digit_classifier") == {"1.0"}


def test_scale_workers(ts_client, scene) -> None:
    try:
        ts_client.scale("digit_segmenter", 2, 2)
        workers = wait_ready(ts_client, "digit_segmenter", 2)
        assert [w["status"] for w in workers] == ["READY", "READY"]
        assert ts_client.predict(scene[0], "digit_segmenter")["objects"]
    finally:
        ts_client.scale("digit_segmenter", 1, 1)
    assert len(wait_ready(ts_client, "digit_segmenter", 1)) == 1
