"""The two default models ship trained in defaults/ (defaults/README.md): they load, their
cards say what their configs trained, they clear the product's quality floors, and they are
what the repo's configs train today (a changed recipe fails here until the defaults are
retrained with `make train` and shipped with `make ship-defaults`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from handlers.contract import DEFAULT_MODELS, DEFAULT_VERSION
from model_src import load_checkpoint
from training.config import config_to_dict, load_config

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = ROOT / "defaults"
CONFIGS = {
    "digit_classifier": ROOT / "training/configs/digits_tinyvgg.yaml",
    "digit_segmenter": ROOT / "training/configs/scenes_unet.yaml",
}
#: The floors the defaults must clear on their held-out test split (issue 16).
FLOORS = {
    "digit_classifier": {"accuracy": 0.98},
    "digit_segmenter": {"foreground_dice": 0.97, "mean_dice": 0.85},  # mean over the digits
}
#: The config sections that decide the weights; the rest is filled in by the run (input from
#: the dataset's statistics, task from the architecture) or only evaluates or logs.
RECIPE = (
    "name", "version", "seed", "data", "model", "augment", "optim", "schedule", "loss",
    "epochs", "patience", "grad_clip", "amp", "channels_last", "deterministic", "monitor",
)  # fmt: skip


def shipped(name: str) -> Path:
    return DEFAULTS / name / DEFAULT_VERSION


def test_every_default_model_ships() -> None:
    assert set(DEFAULT_MODELS) == set(CONFIGS)
    for name in DEFAULT_MODELS:
        files = {p.name for p in shipped(name).iterdir()}
        assert {"model.pt", "report.json", "config.yaml"} <= files, name


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_card_matches_the_config_that_trained_it(name: str) -> None:
    model, card = load_checkpoint(shipped(name) / "model.pt")
    trained = yaml.safe_load((shipped(name) / "config.yaml").read_text())
    assert (card.name, card.version, card.task) == (name, DEFAULT_VERSION, trained["task"])
    assert card.arch == trained["model"]["arch"]
    spec = trained["input"]
    assert (list(card.input.size), card.input.channels) == (spec["size"], spec["channels"])
    assert (list(card.input.mean), list(card.input.std)) == (spec["mean"], spec["std"])
    assert card.dataset["name"] == trained["data"]["name"]
    assert card.dataset["seed"] == trained["data"]["seed"]
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_defaults_clear_the_quality_floors(name: str) -> None:
    test = json.loads((shipped(name) / "report.json").read_text())["test"]
    for metric, floor in FLOORS[name].items():
        assert test[metric] >= floor, (name, metric, test[metric])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_repo_config_still_trains_the_shipped_recipe(name: str) -> None:
    trained = yaml.safe_load((shipped(name) / "config.yaml").read_text())
    today = config_to_dict(load_config(CONFIGS[name]))
    changed = [key for key in RECIPE if trained.get(key) != today.get(key)]
    assert not changed, (
        f"{CONFIGS[name].relative_to(ROOT)} changed {changed} since defaults/{name} was "
        "trained: retrain with `make train`, check the floors, then `make ship-defaults`"
    )
