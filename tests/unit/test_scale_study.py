"""Issue 15's scale study runner: the study file checked, each inference mode mapped to the
handler's own `object_size` option, and a tiny study (two arms, one epoch on a few scenes,
two small held-out pages) trained, scored in every mode and summarised."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from training.scale_study import MODES, load_scale_study, main, mode_options, train_command

REPO = Path(__file__).resolve().parents[2]
BASE = str(REPO / "training/configs/scenes_unet.yaml")


def write(tmp_path: Path, **study) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"base": BASE, "training": {"none": []}, **study}))
    return path


def test_shipped_study_loads() -> None:
    study = load_scale_study(REPO / "training/studies/scenes_scale.yaml")
    assert list(study.training) == ["none", "scale"] and study.inference == list(MODES)
    assert study.training["none"] == [] and study.seeds == [0, 1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "x"}, "unknown keys \\['model'\\]"),
        ({"inference": ["tiles", "zoom"]}, "unknown inference modes \\['zoom'\\]"),
        ({"training": {}}, "at least one arm"),
    ],
)
def test_bad_study_files_are_named(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_scale_study(write(tmp_path, **change))


def test_missing_base_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere\.yaml"):
        load_scale_study(write(tmp_path, base=str(tmp_path / "nowhere.yaml")))


def test_train_command_sets_the_arm_and_leaves_pages_to_the_study(tmp_path: Path) -> None:
    steps = [{"name": "RandomCrop", "kwargs": {"size": 64, "pad_if_needed": True}}]
    study = load_scale_study(write(tmp_path, training={"scale": steps}, overrides={"epochs": 1}))
    command = train_command(study, "scale", 3, tmp_path / "runs")
    assert command[1:4] == ["-m", "training.train", BASE]
    args = dict(a.split("=", 1) for a in command[4:])
    assert json.loads(args["augment"]) == steps and args["eval_pages"] == "null"
    assert args["version"] == "scale-s3" and args["seed"] == "3" and args["epochs"] == "1"


def test_modes_are_object_sizes_for_the_handler() -> None:
    handler = SimpleNamespace(
        object_scale=SimpleNamespace(typical=20.0),
        card=SimpleNamespace(input=SimpleNamespace(size=(64, 64))),
    )
    assert mode_options("scaled_tiles", handler, (1024, 512)) == {}
    assert mode_options("tiles", handler, (1024, 512)) == {"object_size": 20.0}  # scale 1
    assert mode_options("resize", handler, (1024, 512)) == {"object_size": 320.0}  # 1/16
    assert mode_options("resize", handler, (48, 40)) == {"object_size": 20.0}  # never enlarged
    with pytest.raises(ValueError, match="unknown inference mode 'zoom'"):
        mode_options("zoom", handler, (64, 64))


@pytest.mark.slow
def test_tiny_study_scores_every_arm_in_every_mode(tmp_path: Path) -> None:
    scale = [
        {"name": "RandomResize", "kwargs": {"min_size": 40, "max_size": 96}},
        {"name": "RandomCrop", "kwargs": {"size": 64, "pad_if_needed": True}},
    ]
    path = write(
        tmp_path,
        description="tiny",
        training={"none": [], "scale": scale},
        overrides={
            "epochs": 1,
            "data.batch_size": 8,
            "data.options.n_train": 16,
            "data.options.n_val": 4,
            "data.options.n_test": 4,
            "model.kwargs.base_width": 4,
        },
        pages={"n_test": 2, "canvas": [64, 160], "digits": [1, 4]},
    )
    docs = tmp_path / "docs"
    assert main([str(path), "--out", str(tmp_path / "out"), "--docs", str(docs)]) == 0
    for arm in ("none", "scale"):
        row = json.loads((tmp_path / "out/tiny/results" / f"{arm}-s0.json").read_text())
        assert row["status"] == "done", row
        assert set(row["modes"]) == set(MODES) and row["scene_dice"] is not None
        for scores in row["modes"].values():
            assert scores["images"] == 2 and scores["objects"] >= 2
    summary = (docs / "tiny.md").read_text()
    for arm in ("none", "scale"):
        for mode in MODES:
            assert f"| {arm} | {mode} | 1/1 |" in summary
    assert (docs / "tiny.png").is_file()
