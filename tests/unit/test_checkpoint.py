"""The checkpoint format: round trip, weights_only loading, foreign files refused."""

from __future__ import annotations

import pickle

import pytest
import torch

from model_src import (
    CheckpointError,
    InputSpec,
    ModelCard,
    build_model,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)


def _card(**overrides) -> ModelCard:
    fields = {
        "name": "digit_classifier",
        "task": "classification",
        "arch": "tinyvgg",
        "arch_kwargs": {"in_channels": 1, "num_classes": 10, "input_size": [28, 28]},
        "classes": [str(i) for i in range(10)],
        "input": InputSpec(size=(28, 28), channels=1, mean=(0.13,), std=(0.31,)),
        "metrics": {"test_accuracy": 0.99},
    }
    fields.update(overrides)
    return ModelCard(**fields)


def test_round_trip_gives_identical_outputs(tmp_path) -> None:
    torch.manual_seed(0)
    card = _card()
    model = build_model(card.arch, **card.arch_kwargs).eval()
    path = save_checkpoint(tmp_path / "m" / "model.pt", model, card)
    loaded, loaded_card = load_checkpoint(path)
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(model(x), loaded(x))
    assert loaded_card.to_dict() == card.to_dict()
    assert not loaded.training


def test_file_loads_with_weights_only(tmp_path) -> None:
    card = _card()
    path = save_checkpoint(tmp_path / "model.pt", build_model("tinyvgg"), card)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "cvserve-checkpoint/1"
    assert payload["card"]["input"]["size"] == [28, 28]


def test_foreign_files_are_refused_with_a_clear_message(tmp_path) -> None:
    plain = tmp_path / "plain.pt"
    torch.save(build_model("tinyvgg").state_dict(), plain)
    with pytest.raises(CheckpointError, match="not a cvserve checkpoint"):
        read_checkpoint(plain)

    class Evil:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match="weights_only=True failed"):
        read_checkpoint(evil)

    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"task": "detection"}, "task must be one of"),
        ({"name": "bad name"}, "model name"),
        ({"version": "1 0"}, "version"),
        ({"classes": ["a", "a"]}, "unique"),
    ],
)
def test_invalid_cards_fail_early(overrides, match) -> None:
    with pytest.raises(ValueError, match=match):
        _card(**overrides)


def test_binary_segmentation_card() -> None:
    card = _card(
        task="segmentation",
        arch="unet",
        arch_kwargs={"num_classes": 1},
        classes=["background", "pet"],
    )
    assert card.is_binary and card.num_outputs == 1


def test_non_json_values_fail_at_save_time(tmp_path) -> None:
    card = _card(metrics={"bad": object()})
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "model.pt", build_model("tinyvgg"), card)
    assert not (tmp_path / "model.pt").exists()
