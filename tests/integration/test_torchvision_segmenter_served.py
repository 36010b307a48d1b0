"""A torchvision LR-ASPP served by the unchanged segmenter handler through a real TorchServe.

The archive is a tiny, briefly trained `lraspp` checkpoint; its card records torchvision's
output convention (`arch_kwargs.output_key`), and the built module returns the logits
tensor, so the handler serves it exactly like the U-Net and answers with the segmenter
contract of docs/api.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from api_fields import OBJECT_KEYS, SEGMENTATION_KEYS
from imaging import decode_png

from model_src import InputSpec, read_checkpoint
from tools.archive import archive_checkpoint
from training.data import build_splits

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "digit_segmenter_lraspp"
REGISTER_TIMEOUT = 300


@pytest.fixture(scope="module")
def lraspp(ts_server, tiny_models, model_store: Path, tmp_path_factory):
    """A 30-step LR-ASPP on digit scenes, archived (eager) and registered with one worker."""
    torch.manual_seed(0)
    splits = build_splits("digit_scenes", seed=0, n_train=128, n_val=8, n_test=8)
    path = tmp_path_factory.mktemp("lraspp") / "model.pt"
    tiny_models._train_and_save(
        path,
        name=NAME,
        task="segmentation",
        arch="lraspp",
        arch_kwargs={"in_channels": 1, "num_classes": 11, "output_key": "out"},
        splits=splits,
        spec=InputSpec(size=(64, 64), channels=1, mean=splits.mean, std=splits.std),
        batch_size=16,
        steps=30,
        lr=3e-3,
        seed=0,
        version="1.0",
        weight=torch.tensor([0.2] + [1.0] * 10),
    )
    # The archive's own rule: above 2M parameters it serves the ONNX Runtime export (issue 17),
    # parity-checked against the eager model at archive time.
    archive = archive_checkpoint(path, model_store, min_workers=1, max_workers=1)
    client = ts_server.client(timeout=REGISTER_TIMEOUT)
    client.register(archive.path.name, initial_workers=1, synchronous=True)
    yield client, path
    client.unregister(NAME, "1.0")


def test_lraspp_answers_with_the_segmenter_contract(lraspp, scene) -> None:
    client, path = lraspp
    card, _ = read_checkpoint(path)
    assert card.arch == "lraspp" and card.arch_kwargs["output_key"] == "out"
    (described,) = client.describe(NAME, "1.0", customized=True)
    assert described["customizedMetadata"]["runtime"]["backend"] == "onnxruntime"
    body = client.predict(scene[0], NAME)
    assert set(body) == SEGMENTATION_KEYS
    assert (body["model"], body["version"]) == (NAME, "1.0")
    assert (body["width"], body["height"]) == (64, 64)
    assert body["classes"] == card.classes
    values = np.asarray(decode_png(body["mask_png"]))
    assert values.shape == (64, 64) and values.max() < len(card.classes)
    counts = np.bincount(values.ravel(), minlength=len(card.classes))
    assert body["class_pixels"] == {card.classes[i]: int(n) for i, n in enumerate(counts) if n}
    for obj in body["objects"]:
        assert set(obj) == OBJECT_KEYS
        assert obj["class"] == card.classes[obj["class_index"]] != "background"
