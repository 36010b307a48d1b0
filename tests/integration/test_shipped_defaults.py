"""The shipped default classifier (defaults/) through a real TorchServe: it reads held-out
digits, and its Grad-CAM maps put their mass on the digit (docs/api.md, Explanations).

The session server's tiny test classifier cannot show the second: its Grad-CAM map of the
predicted class is empty (no positive evidence in its last convolution after a few hundred
steps); the trained model's is not.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from imaging import decode_png, png
from scipy import ndimage

from handlers.contract import CLASSIFIER, DEFAULT_VERSION
from training.data import build_splits

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = 20
INK = 64  # gray level above which a pixel is the digit's ink
#: Measured on the shipped model (20 held-out digits): 0.70-0.92 of each map's mass lies on
#: the ink grown by 2 px, which covers 0.35-0.49 of the image (a uniform map would put that
#: fraction there).
MIN_MASS_ON_DIGIT = 0.6


@pytest.fixture(scope="module")
def shipped_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if shutil.which("java") is None:
        pytest.skip("Java 17+ is needed for TorchServe (tools/check_java.sh)")
    from tools.archive import archive_checkpoint
    from tools.sandbox import sandbox_server

    store = tmp_path_factory.mktemp("shipped_store")
    checkpoint = ROOT / "defaults" / CLASSIFIER / DEFAULT_VERSION / "model.pt"
    archive_checkpoint(checkpoint, store, min_workers=1, max_workers=1)
    overrides = {"load_models": f"{CLASSIFIER}.mar"}
    workdir = tmp_path_factory.mktemp("shipped_ts")
    with sandbox_server(store, workdir, workflows=(), overrides=overrides) as box:
        yield box.client()


@pytest.fixture(scope="module")
def held_out() -> list[tuple[np.ndarray, str]]:
    splits = build_splits("digits", seed=0)  # the split the shipped model was tested on
    return [
        (np.asarray(image), splits.classes[label])
        for image, label in (splits.test[i] for i in range(SAMPLES))
    ]


def test_the_shipped_classifier_reads_held_out_digits(shipped_client, held_out) -> None:
    from PIL import Image

    right = sum(
        shipped_client.predict(png(Image.fromarray(pixels)), CLASSIFIER)["label"] == label
        for pixels, label in held_out
    )
    assert right >= SAMPLES - 1, f"{right}/{SAMPLES}"  # 98.4% on the whole test split


def test_gradcam_puts_its_mass_on_the_digit(shipped_client, held_out) -> None:
    from PIL import Image

    on_digit, covered = [], []
    for pixels, _ in held_out:
        body = shipped_client.explain(png(Image.fromarray(pixels)), CLASSIFIER, method="gradcam")
        heat = np.asarray(decode_png(body["heatmap_png"]), dtype=np.float64)
        assert heat.shape == pixels.shape and heat.sum() > 0
        digit = ndimage.binary_dilation(pixels > INK, iterations=2)
        on_digit.append(heat[digit].sum() / heat.sum())
        covered.append(digit.mean())
    print(f"\nGrad-CAM mass on the digit {np.round(on_digit, 2)}, area {np.round(covered, 2)}")
    assert min(on_digit) >= MIN_MASS_ON_DIGIT, on_digit
    assert np.mean(on_digit) >= 1.5 * np.mean(covered), (on_digit, covered)
