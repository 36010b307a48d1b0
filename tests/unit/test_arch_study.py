"""The architecture study runner end to end on a tiny study: a cvserve architecture and
YOLO-seg trained for one epoch on a few scenes, scored alike, summarised."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from training.arch_study import METRICS, load_arch_study, main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_study_scores_every_architecture_alike(tmp_path: Path) -> None:
    if importlib.util.find_spec("ultralytics") is None:  # not imported: see runner.yolo_class
        pytest.skip("optional extra: make install-yolo")
    study = {
        "description": "tiny",
        "data": {
            "name": "digit_scenes",
            "seed": 0,
            "options": {"n_train": 16, "n_val": 4, "n_test": 4},
        },
        "seeds": [0],
        "models": {"lraspp": str(REPO / "training/configs/scenes_lraspp.yaml")},
        "overrides": {"epochs": 1, "data.batch_size": 8},
        "yolo": {"epochs": 1, "imgsz": 64, "batch": 8},
        "latency_items": 3,
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(study))
    docs = tmp_path / "docs"
    assert main([str(path), "--out", str(tmp_path / "out"), "--docs", str(docs)]) == 0
    results = tmp_path / "out" / "tiny" / "results"
    for arch in ("lraspp", "yolov8n-seg"):
        row = json.loads((results / f"{arch}-s0.json").read_text())
        assert row["status"] == "done", row
        assert set(METRICS) <= set(row) and row["mean_dice"] is not None
        assert row["params"] > 1_000_000 and row["latency_ms"] > 0 and row["epochs"] == 1
    summary = (docs / "tiny.md").read_text()
    assert "| lraspp | 1/1 |" in summary and "| yolov8n-seg | 1/1 |" in summary
    assert (docs / "tiny.png").is_file()


def test_shipped_study_loads() -> None:
    study = load_arch_study(REPO / "training/studies/scenes_architectures.yaml")
    assert list(study.models) == ["unet", "lraspp", "deeplabv3"] and study.yolo
    assert study.seeds == [0, 1]


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("data: {name: digit_scenes}\nmodel: x\n")
    with pytest.raises(ValueError, match="unknown keys \\['model'\\]"):
        load_arch_study(path)
