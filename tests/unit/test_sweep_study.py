"""A real study end to end: three tiny trials through `python -m training.train`, the
summary and plots, then a resume that trains nothing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from model_src import read_checkpoint
from training import sweep

REPO = Path(__file__).resolve().parents[2]
# Two optimizer steps of 16 items per trial, 32 items to validate and test on.
TINY = {
    "base": str(REPO / "training" / "configs" / "digits_tinyvgg.yaml"),
    "overrides": {"epochs": 1, "data.limit": 32, "data.batch_size": 16, "schedule.name": "none"},
    "budget": 3,
    "trial_timeout": 120,
    "search": {
        "sampler": "random",
        "params": {
            "optim.lr": {"log_uniform": [1.0e-3, 1.0e-2]},
            "data.batch_size": {"choice": [8, 16]},
        },
    },
}


@pytest.mark.slow
def test_a_three_trial_study_runs_reports_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study_file = tmp_path / "tiny.yaml"
    study_file.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "studies"
    assert sweep.main([str(study_file), "--out", str(out), "--quiet"]) == 0

    folder = out / "tiny"
    for name in ("summary.csv", "summary.md", "search.png"):
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0
    rows = list(csv.DictReader((folder / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["done"] * 3 and [r["rank"] for r in rows] == [
        "1",
        "2",
        "3",
    ]
    vals = [float(r["val_accuracy"]) for r in rows]
    assert vals == sorted(vals, reverse=True)  # best validation score first
    assert {r["trial"] for r in rows} == {"t000", "t001", "t002"}
    assert all(float(r["images_per_s"]) > 0 and float(r["wall_s"]) > 0 for r in rows)
    assert all(r[f"recall_{d}"] != "" for r in rows for d in "0123456789")

    best = Path(rows[0]["checkpoint"])
    card, _ = read_checkpoint(best)
    assert (card.name, card.version) == ("digit_classifier", f"tiny-{rows[0]['trial']}")
    summary = (folder / "summary.md").read_text()
    header = "| # | trial | data.batch_size | optim.lr | val accuracy | test accuracy |"
    assert header in summary  # (safe_dump sorted the search keys)
    assert f"python -m tools.archive {rows[0]['checkpoint']}" in summary
    printed = capsys.readouterr().out
    assert f"best checkpoint: {rows[0]['checkpoint']}" in printed

    report = json.loads((best.parent / "report.json").read_text())
    assert report["config"]["epochs"] == 1 and report["config"]["data"]["limit"] == 32
    sampled = json.loads((best.parent / "trial.json").read_text())["params"]
    assert report["config"]["optim"]["lr"] == sampled["optim.lr"]
    assert report["config"]["data"]["batch_size"] == sampled["data.batch_size"]

    # Without --resume the finished study is protected; with it nothing is retrained.
    assert sweep.main([str(study_file), "--out", str(out), "--quiet"]) == 2
    stamps = {p: p.stat().st_mtime_ns for p in folder.glob("runs/*/*/report.json")}
    assert sweep.main([str(study_file), "--out", str(out), "--quiet", "--resume"]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert len(list(csv.DictReader((folder / "summary.csv").open()))) == 3
