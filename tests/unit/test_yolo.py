"""The optional YOLO-seg extra (training/yolo): masks -> polygons -> masks, the YOLO dataset
holds cvserve's own split, and the runner trains and scores with cvserve's metrics.
ultralytics is installed by `make test` (requirements-yolo.txt)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from training.data import build_splits

# Looked up, not imported: importing ultralytics changes os.environ (runner.yolo_class).
if importlib.util.find_spec("ultralytics") is None:
    pytest.skip("optional extra: make install-yolo", allow_module_level=True)

from training.yolo import convert, runner

REPO = Path(__file__).resolve().parents[2]
SMALL = {"n_train": 8, "n_val": 4, "n_test": 4}


def test_mask_polygon_mask_round_trip_on_real_digit_masks() -> None:
    splits = build_splits("digit_scenes", seed=0, n_train=4, n_val=4, n_test=60)
    ious = []
    for i in range(60):
        mask = np.asarray(splits.test[i][1])
        lines = convert.label_lines(convert.mask_polygons(mask, 11), *mask.shape)
        back = convert.polygons_mask(convert.read_label_lines(lines, *mask.shape), *mask.shape)
        for c in range(1, 11):
            truth, got = mask == c, back == c
            if truth.any():
                ious.append((truth & got).sum() / (truth | got).sum())
    assert len(ious) > 60 and min(ious) >= 0.9, min(ious)


def test_a_digit_with_a_hole_keeps_its_hole() -> None:
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[4:16, 4:16] = 1
    mask[8:12, 8:12] = 0  # a "0": the hole is background
    polygons = convert.mask_polygons(mask, 2)
    assert len(polygons) == 1
    assert np.array_equal(convert.polygons_mask(polygons, 20, 20), mask)


def test_the_yolo_dataset_is_cvserves_split(tmp_path: Path) -> None:
    data_yaml = convert.write_yolo_dataset(tmp_path, "digit_scenes", 0, **SMALL)
    splits = build_splits("digit_scenes", seed=0, **SMALL)
    from PIL import Image

    for split in ("train", "val", "test"):
        data = getattr(splits, split)
        assert len(list((tmp_path / "images" / split).glob("*.png"))) == len(data)
        image, mask = data[1]
        written = Image.open(tmp_path / "images" / split / "00001.png")
        assert np.array_equal(np.asarray(written), np.asarray(image))
        lines = (tmp_path / "labels" / split / "00001.txt").read_text().splitlines()
        assert {int(line.split()[0]) for line in lines} == {c - 1 for c in np.unique(mask) if c}
    assert "names" in data_yaml.read_text()


def test_runner_trains_one_epoch_and_scores_with_cvserves_metrics(tmp_path: Path) -> None:
    options = [f"--option={k}={v}" for k, v in SMALL.items()]
    args = ["--out", str(tmp_path), "--epochs", "1", "--batch", "4", *options]
    assert runner.main(args) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    test = report["test"]
    assert test["images"] == 4 and test["objects"] >= 4
    for key in ("mean_dice", "foreground_dice", "f1", "label_accuracy", "precision", "recall"):
        assert key in test
    assert test["latency_ms"] > 0 and test["params"] > 1_000_000
    assert Path(report["weights"]).is_file() and report["train_seconds"] > 0


def test_ultralytics_stays_out_of_serving() -> None:
    from tools.archive import package_files

    for path in package_files():
        assert "ultralytics" not in path.read_text(errors="ignore"), path
    assert "ultralytics" not in (REPO / "deploy" / "requirements.txt").read_text()


def test_importing_ultralytics_leaves_the_environment_alone() -> None:
    """Its import writes OMP_NUM_THREADS=1 and more into os.environ; later torch subprocesses
    and cvserve's thread rule would inherit them."""
    from training.yolo.runner import yolo_class

    before = dict(os.environ)
    assert yolo_class().__name__ == "YOLO"
    assert dict(os.environ) == before
