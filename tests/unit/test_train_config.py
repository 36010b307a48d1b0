"""Experiment configs: typed loading, overrides, and errors that say how to fix them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from training.config import (
    Config,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "training" / "configs"
MINIMAL = {"name": "m", "data": {"name": "digits"}, "model": {"arch": "mlp"}}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_loads_and_round_trips(path: Path, tmp_path: Path) -> None:
    config = load_config(path)
    saved = save_config(config, tmp_path / "config.yaml")
    assert load_config(saved) == config


def test_defaults_fill_what_the_yaml_leaves_out(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert isinstance(config, Config)
    assert (config.optim.name, config.schedule.name, config.loss.name) == ("adamw", "none", "ce")
    assert config.input.mean is None  # the dataset's default, resolved at fit time
    assert config.run_dir == Path("checkpoints/m/1.0")


def test_overrides_use_dotted_paths_and_yaml_values(tmp_path: Path) -> None:
    raw = {**MINIMAL, "augment": [{"name": "RandomAffine", "kwargs": {"degrees": 10}}]}
    config = load_config(
        write(tmp_path, raw),
        [
            "optim.lr=0.01",
            "epochs=3",
            "version=1.10",
            "model.kwargs.hidden_sizes=[8, 4]",
            "augment.0.kwargs.degrees=5",
            "data.options.n_val=100",
            "patience=null",
            "amp=bf16",
        ],
    )
    assert config.optim.lr == 0.01 and config.epochs == 3
    assert config.version == "1.10"  # a text field keeps the text, not the float 1.1
    assert config.model.kwargs == {"hidden_sizes": [8, 4]}
    assert config.augment[0].kwargs == {"degrees": 5}
    assert config.data.options == {"n_val": 100}
    assert config.patience is None and config.amp == "bf16"


def test_overrides_do_not_modify_the_input() -> None:
    apply_overrides(MINIMAL, ["model.kwargs.dropout=0.5"])
    assert "kwargs" not in MINIMAL["model"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({**MINIMAL, "epoch": 3}, r"unknown key 'epoch' in the top level; valid keys: name, "),
        ({**MINIMAL, "optim": {"lrr": 0.1}}, r"unknown key 'lrr' in optim; valid keys: name, lr"),
        ({"name": "m", "model": {"arch": "mlp"}}, r"missing the required key 'data'"),
        ({**MINIMAL, "optim": {"name": "adamx"}}, r"optim.name 'adamx'.*adam, adamw, sgd"),
        ({**MINIMAL, "epochs": 0}, r"epochs must be >= 1"),
        ({**MINIMAL, "optim": {"lr": -1}}, r"optim.lr must be > 0"),
        ({**MINIMAL, "data": {"name": "d", "batch_size": "big"}}, r"data.batch_size must be a"),
        ({**MINIMAL, "channels_last": "yes"}, r"channels_last must be true or false"),
        ({**MINIMAL, "amp": "fp8"}, r"amp 'fp8'.*none, bf16, fp16"),
        ({**MINIMAL, "schedule": {"name": "cosine", "warmup_epochs": 10}}, r"warmup_epochs"),
        ({**MINIMAL, "task": "classification", "loss": {"name": "dice"}}, r"use ce"),
        ({**MINIMAL, "input": {"mean": [0.5]}}, r"input.mean and input.std"),
        ({**MINIMAL, "name": "a b"}, r"name 'a b' must be"),
        ({**MINIMAL, "augment": [{"kwargs": {}}]}, r"missing the required key 'augment.0.name'"),
    ],
)
def test_bad_configs_are_refused_with_the_fix(raw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config_from_dict(raw)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("epochs", r"must look like key=value"),
        ("=3", r"must look like key=value"),
        ("optim.lrr=0.1", r"unknown key 'lrr' in optim; valid keys"),
        ("augment.x=1", r"augment is a list: address items by index"),
        ("augment.3.name=Pad", r"augment.3: no item 3"),
        ("epochs=three", r"epochs must be a int"),
        ("epochs.x=1", r"cannot set a key below epochs"),
    ],
)
def test_bad_overrides_are_refused(override: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(write(tmp_path, MINIMAL), [override])


def test_override_below_a_free_form_value_is_refused() -> None:
    raw = {**MINIMAL, "model": {"arch": "mlp", "kwargs": {"dropout": 0.1}}}
    with pytest.raises(ValueError, match=r"cannot set a key below model\.kwargs\.dropout"):
        apply_overrides(raw, ["model.kwargs.dropout.p=0.2"])


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_to_dict_starts_with_the_identity() -> None:
    keys = list(config_to_dict(config_from_dict(MINIMAL)))
    assert keys[:4] == ["name", "version", "task", "seed"]
