"""An ONNX Runtime archive through a real TorchServe (issue 17): it answers like the eager
archive of the same checkpoint, says which backend its worker runs, and its explanations
still work (they run on the eager model: ONNX Runtime has no autograd for Captum)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from imaging import decode_png

from model_src import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS = ("digit_classifier", "digit_segmenter")
SUFFIX = "_ort"


@pytest.fixture(scope="module")
def onnx_models(ts_client, checkpoint_root, model_store, tmp_path_factory) -> Iterator[None]:
    """The session's checkpoints under new names (`<name>_ort`), archived by the CLI with
    `--backend onnxruntime` and registered next to their eager archives."""
    folder = tmp_path_factory.mktemp("onnx_checkpoints")
    for name in MODELS:
        model, card = load_checkpoint(checkpoint_root / name / "1.0" / "model.pt")
        card.name = name + SUFFIX
        checkpoint = save_checkpoint(folder / card.name / "model.pt", model, card)
        cmd = [
            sys.executable, "-m", "tools.archive", str(checkpoint), "--backend", "onnxruntime",
            "--workers", "1", "--model-store", str(model_store), "--no-workflows",
        ]  # fmt: skip
        done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        ts_client.register(f"{card.name}.mar", initial_workers=1)
    try:
        yield
    finally:
        for name in MODELS:
            ts_client.unregister(name + SUFFIX)


def runtime(ts_client, name: str) -> dict:
    (custom,) = ts_client.describe(name, customized=True)
    return custom["customizedMetadata"]["runtime"]


def test_workers_report_the_backend(ts_client, onnx_models) -> None:
    for name in MODELS:
        ort = runtime(ts_client, name + SUFFIX)
        assert (ort["backend"], ort["requested_backend"]) == ("onnxruntime", "onnxruntime")
        assert ort["provider"] == "CPUExecutionProvider" and "backend_note" not in ort
        assert runtime(ts_client, name)["backend"] == "eager"  # the session's archives


def test_classifier_answers_like_eager(ts_client, onnx_models, digits) -> None:
    for data, _label in digits[:6]:
        eager = ts_client.predict(data, "digit_classifier")
        ort = ts_client.predict(data, "digit_classifier" + SUFFIX)
        assert ort["model"] == "digit_classifier" + SUFFIX
        assert [t["label"] for t in ort["topk"]] == [t["label"] for t in eager["topk"]]
        for a, b in zip(ort["topk"], eager["topk"], strict=True):
            assert a["score"] == pytest.approx(b["score"], abs=2e-5)  # 6 digits rounded


def test_segmenter_answers_like_eager(ts_client, onnx_models, scene) -> None:
    data, _digits = scene
    eager = ts_client.predict(data, "digit_segmenter")
    ort = ts_client.predict(data, "digit_segmenter" + SUFFIX)
    want = np.asarray(decode_png(eager["mask_png"]))
    got = np.asarray(decode_png(ort["mask_png"]))
    assert got.shape == want.shape
    assert (got == want).mean() >= 0.9999  # float rounding may flip a tie, nothing more
    labels = [o["class"] for o in eager["objects"]]
    assert labels and [o["class"] for o in ort["objects"]] == labels


@pytest.mark.parametrize("method", ["integrated_gradients", "gradcam"])
def test_explanations_still_work_on_the_eager_model(ts_client, onnx_models, digits, method):
    data, _label = digits[0]
    eager = ts_client.explain(data, "digit_classifier", method=method, n_steps=16)
    ort = ts_client.explain(data, "digit_classifier" + SUFFIX, method=method, n_steps=16)
    assert ort["method"] == method and ort["target"]["label"] == eager["target"]["label"]
    # Same weights, same eager model and Captum: the same heatmap up to 8-bit rounding of
    # sums taken in another thread order.
    want = np.asarray(decode_png(eager["heatmap_png"]), dtype=int)
    got = np.asarray(decode_png(ort["heatmap_png"]), dtype=int)
    assert got.shape == want.shape and np.abs(got - want).max() <= 1
    assert runtime(ts_client, "digit_classifier" + SUFFIX)["backend"] == "onnxruntime"
