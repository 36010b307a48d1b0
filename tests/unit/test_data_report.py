"""`python -m training.data.report` on a small generated dataset: the numbers add up and the
markdown and plots are written."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.data import build_splits
from training.data.report import analyse, main

OPTIONS = {"n_train": 24, "n_val": 4, "n_test": 4}


def test_report_counts_match_the_masks_and_the_placed_digits() -> None:
    splits = build_splits("digit_scenes", seed=0, **OPTIONS)
    report = analyse(splits, "digit_scenes", "train")
    masks = [np.asarray(splits.train[i][1]) for i in range(24)]
    expected = np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=11)
    assert report.images == 24 and report.image_sizes == {"64x64": 24}
    assert report.class_pixels == expected.tolist()
    assert report.class_images == [sum((m == c).any() for m in masks) for c in range(11)]
    # Every placed digit is at least one connected component of its class.
    placed = [len(splits.train.scene(i).digits) for i in range(24)]
    assert all(n >= p for n, p in zip(report.objects_per_image, placed, strict=True))
    assert sum(report.class_objects) == sum(report.objects_per_image) == len(report.object_sizes)
    coverage = [float((m > 0).mean()) for m in masks]
    assert np.allclose(report.coverage, coverage)


def test_cli_writes_markdown_and_plots(tmp_path: Path, capsys) -> None:
    options = [f"--option={k}={v}" for k, v in OPTIONS.items()]
    assert main(["digit_scenes", *options, "--out", str(tmp_path)]) == 0
    text = (tmp_path / "digit_scenes.md").read_text()
    assert "| background |" in text and "Objects per image" in text
    assert text in capsys.readouterr().out
    for plot in ("classes", "objects", "samples"):
        path = tmp_path / f"digit_scenes_{plot}.png"
        assert path.stat().st_size > 1000 and f"({path.name})" in text


def test_classification_dataset_gets_class_counts(tmp_path: Path) -> None:
    splits = build_splits("digits", seed=0)
    report = analyse(splits, "digits", "val", limit=50)
    assert sum(report.class_items) == 50 and report.class_pixels == []
