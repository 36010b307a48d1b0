"""Opt-in torch.compile of the prediction forward (`handler: {compile: true}`): the same
answers as the eager model, explanations on the eager model, and a clean fallback."""

from __future__ import annotations

import pytest
import torch
from test_handlers_support import encode, gray_image, make_classifier, make_context, run_batch

from handlers import compiled
from handlers.classifier import ClassifierHandler


@pytest.fixture(autouse=True)
def keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def load(folder, **handler_settings):
    context = make_context(folder, "x", model_config={"batchSize": 2, "handler": handler_settings})
    handler = ClassifierHandler()
    handler.initialize(context)
    return handler, context


def test_compiled_forward_gives_the_eager_answers(tmp_path):
    make_classifier(tmp_path)
    eager, context = load(tmp_path)
    fast, _ = load(tmp_path, compile=True)
    assert fast.network is not fast.model and eager.network is eager.model
    rows = [{"body": encode(gray_image(20 + i, 30))} for i in range(3)]  # batch 3: not warmed
    want, _ = run_batch(eager, context, rows)
    got, statuses = run_batch(fast, context, rows)
    assert statuses == [200, 200, 200]
    for a, b in zip(want, got, strict=True):
        assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_compile_failure_serves_the_eager_model(tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(compiled.torch, "compile", broken)
    make_classifier(tmp_path)
    handler, context = load(tmp_path, compile=True)
    assert handler.network is handler.model
    assert "no C++ compiler" in caplog.text
    (body,), (status,) = run_batch(handler, context, [{"body": encode(gray_image(28, 28))}])
    assert status == 200 and body["label"]


def test_compile_setting_must_be_a_bool(tmp_path):
    make_classifier(tmp_path)
    with pytest.raises(ValueError, match="compile must be true or false"):
        load(tmp_path, compile="yes")
