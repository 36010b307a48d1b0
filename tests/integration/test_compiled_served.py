"""The compiled forward through a real TorchServe (`handler: {backend: compile}`, opt-in
with `--backend compile`; ONNX Runtime is the default above 2M parameters on CPU): a compiled
version of the classifier answers like the eager one. The tiny test classifier is archived
with `backend="compile"` (the threshold is about time, not correctness), registered next to
the eager 1.0, and both are asked the same.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from handlers.contract import CLASSIFIER
from model_src import load_checkpoint, save_checkpoint
from tools.archive import archive_checkpoint

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMPILED = "7.0"
REGISTER_TIMEOUT = 600  # the worker compiles for batch 1 and the batch size before READY


@pytest.fixture(scope="module")
def compiled_version(ts_server, checkpoint_root: Path, model_store: Path, tmp_path_factory):
    """digit_classifier 7.0: the 1.0 weights, archived with compile on, registered."""
    model, card = load_checkpoint(checkpoint_root / CLASSIFIER / "1.0" / "model.pt", "cpu")
    path = tmp_path_factory.mktemp("compiled") / "model.pt"
    save_checkpoint(path, model, dataclasses.replace(card, version=COMPILED))
    archive = archive_checkpoint(path, model_store, min_workers=1, max_workers=1, backend="compile")
    client = ts_server.client(timeout=REGISTER_TIMEOUT)
    client.register(archive.path.name, initial_workers=1, synchronous=True)
    yield client
    client.unregister(CLASSIFIER, COMPILED)


def test_the_compiled_version_is_compiled_and_answers_like_the_eager_one(
    compiled_version, digits
) -> None:
    client = compiled_version
    (desc,) = client.describe(CLASSIFIER, COMPILED, customized=True)
    assert desc["customizedMetadata"]["compiled"] is True, desc  # not a silent eager fallback
    assert desc["customizedMetadata"]["serving"]["compile_why"] == "the archive's handler settings"
    (eager_desc,) = client.describe(CLASSIFIER, "1.0", customized=True)
    assert eager_desc["customizedMetadata"]["compiled"] is False
    files = [data for data, _ in digits[:8]]
    for version_answers in (
        [client.predict(f, CLASSIFIER, COMPILED) for f in files],
        client.predict_many(files, CLASSIFIER, COMPILED)["predictions"],  # another batch size
    ):
        eager = [client.predict(f, CLASSIFIER, "1.0") for f in files]
        for got, want in zip(version_answers, eager, strict=True):
            assert got["label"] == want["label"]
            assert got["score"] == pytest.approx(want["score"], abs=1e-4)
            for a, b in zip(got["topk"], want["topk"], strict=True):
                assert a["score"] == pytest.approx(b["score"], abs=1e-4)
