"""tools.bench.answers: what counts as the same answer, on hand-made and real handler
answers (a tiny random classifier and segmenter, loaded in-process)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model_src import InputSpec, ModelCard, build_model, save_checkpoint
from tools.bench import answers, inprocess
from tools.bench.subjects import image_payload, load_handler


def _mask_png(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "P").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def test_keys_of_each_kind_of_answer() -> None:
    assert answers.answer_key({"label": "3", "score": 0.9}) == {"label": "3"}
    explained = {"method": "saliency", "target": {"label": "7", "score": 0.5}}
    assert answers.answer_key(explained) == {"label": "7"}
    mask = np.zeros((4, 5))
    seg = answers.answer_key({"mask_png": _mask_png(mask), "objects": [{"class": "2"}]})
    assert seg["objects"] == ["2"] and seg["mask"][0] == (5, 4)
    pipe = answers.answer_key({"mask_png": _mask_png(mask), "labels": ["1", "4"], "objects": []})
    assert pipe["labels"] == ["1", "4"] and "objects" not in pipe
    with pytest.raises(ValueError):
        answers.answer_key({"error": {"status": 400}})


def test_compare_names_what_differs() -> None:
    assert answers.compare({"label": "3"}, {"label": "3"}) is None
    assert answers.compare({"label": "3"}, {"label": "5"}) == "label '5' instead of '3'"
    a, b = np.zeros((4, 4)), np.zeros((4, 4))
    b[0, :3] = 1
    want = answers.answer_key({"mask_png": _mask_png(a), "objects": []})
    got = answers.answer_key({"mask_png": _mask_png(b), "objects": []})
    assert answers.compare(want, got) == "mask differs in 3 of 16 pixels"
    # float rounding may flip a pixel on a near-tie: within the tolerance of a big mask
    big, flipped = np.zeros((256, 256)), np.zeros((256, 256))
    flipped[0, :6] = 1
    big_key = answers.answer_key({"mask_png": _mask_png(big), "objects": []})
    assert (
        answers.compare(big_key, {**big_key, "mask": answers.decode_mask(_mask_png(flipped))})
        is None
    )
    flipped[0, :7] = 1
    assert answers.compare(
        big_key, {**big_key, "mask": answers.decode_mask(_mask_png(flipped))}
    ) == ("mask differs in 7 of 65536 pixels")
    small = answers.answer_key({"mask_png": _mask_png(np.zeros((2, 2))), "objects": []})
    assert answers.compare(want, small).startswith("mask size (2, 2)")


def test_check_counts_mismatches_and_unreadable_answers() -> None:
    reference = {"label": "3", "score": 0.9}
    good = json.dumps({"label": "3", "score": 0.8}).encode()
    wrong = json.dumps({"label": "4"}).encode()
    result = answers.check(reference, [good, good, wrong, b"<html>oops"])
    assert result["checked"] == 4 and result["mismatches"] == 2
    assert "label '4' instead of '3'" in result["examples"]
    assert any(e.startswith("unreadable answer") for e in result["examples"])
    assert not answers.passed(result)
    assert answers.passed(answers.check(reference, [good]))
    assert not answers.passed(answers.check(reference, []))  # nothing checked: not passed
    assert not answers.passed(answers.check(None, [good]))  # no reference: not passed
    merged = answers.merge([answers.check(reference, [good]), result])
    assert (merged["checked"], merged["mismatches"]) == (5, 2)


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    kwargs = {"in_channels": 1, "num_classes": 3, "depth": 2, "base_width": 4}
    card = ModelCard(
        "tiny_seg",
        "segmentation",
        "unet",
        kwargs,
        ["background", "a", "b"],
        InputSpec(size=(32, 32), channels=1, mean=(0.5,), std=(0.25,)),
    )
    path = tmp_path_factory.mktemp("seg") / "model.pt"
    return save_checkpoint(path, build_model("unet", **kwargs), card)


def test_real_segmenter_answer_equals_itself_not_a_wrong_model(segmenter: Path) -> None:
    gen = np.random.default_rng(0)
    payload = image_payload(Image.fromarray(gen.integers(0, 255, (32, 32), dtype=np.uint8), "L"))
    handler = load_handler(segmenter)
    reference = inprocess.reference_answer(handler, payload)
    again = json.dumps(inprocess.reference_answer(load_handler(segmenter), payload)).encode()
    assert answers.check(reference, [again]) == {"checked": 1, "mismatches": 0, "examples": []}
    # a "fast, wrong server": the same network with its last layer pushed to class "a"
    wrong = load_handler(segmenter)
    last = [m for m in wrong.model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.bias[1] += 100.0
    other = json.dumps(inprocess.reference_answer(wrong, payload)).encode()
    differs = answers.check(reference, [other])
    assert differs["mismatches"] == 1 and "mask differs" in differs["examples"][0]
