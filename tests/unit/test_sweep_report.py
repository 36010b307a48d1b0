"""Report files from trial results: ranking, ablation means and spreads, recall of the cut
classes, failed trials, plots. Trials are faked with the files a real run leaves (the
trainer's report.json and the sweep's trial.json), so no training is needed here."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from training.sweeps import StudyRunner, collect, plan_trials, write_report
from training.sweeps.config import Study, study_from_dict
from training.sweeps.plan import Trial
from training.sweeps.results import best, rank

REPO = Path(__file__).resolve().parents[2]
BASE = str(REPO / "training" / "configs" / "digits_tinyvgg.yaml")
CLASSES = [str(d) for d in range(10)]


def fake_run(runner: StudyRunner, trial: Trial, val: float, test: float, recall3: float) -> None:
    """Leave the files of a finished trial whose scores are given."""
    run_dir = runner.run_dir(trial)
    run_dir.mkdir(parents=True)
    per_class = {c: {"precision": 0.9, "recall": recall3 if c == "3" else 0.95} for c in CLASSES}
    report = {
        "task": "classification",
        "monitor": "accuracy",
        "val": {"loss": 0.3, "accuracy": val, "top5_accuracy": 1.0},
        "test": {"loss": 0.3, "accuracy": test, "top5_accuracy": 1.0},
        "per_class": per_class,
        "best_epoch": 2,
        "epochs": 3,
        "wall_time_s": 12.5,
        "train_images_per_s": 950.0,
    }
    (run_dir / "report.json").write_text(json.dumps(report))
    (run_dir / "trial.json").write_text(json.dumps({"status": "done", "process_s": 15.0}))


def results_of(study: Study, tmp_path: Path, scores: dict[str, tuple[float, float, float]]) -> Any:
    runner = StudyRunner(study, tmp_path)
    trials = plan_trials(study)
    for trial in trials:
        if trial.id in scores:
            fake_run(runner, trial, *scores[trial.id])
    return runner, [collect(runner, t, order=i) for i, t in enumerate(trials)]


def test_search_report_ranks_by_validation_and_plots(tmp_path: Path) -> None:
    study = study_from_dict(
        {
            "base": BASE,
            "budget": 3,
            "search": {
                "params": {
                    "optim.lr": {"log_uniform": [1.0e-4, 1.0e-1]},
                    "data.batch_size": {"choice": [16, 32, 64, 128]},
                }
            },
        },
        "lr",
    )
    # t001 has the best test score but not the best validation score: it must not win.
    runner, results = results_of(
        study, tmp_path, {"t000": (0.95, 0.94, 0.9), "t001": (0.90, 0.99, 0.9)}
    )
    assert [r.trial.id for r in rank(results)] == ["t000", "t001", "t002"]
    assert best(results).trial.id == "t000" and results[2].status == "not run"
    paths = write_report(study, results, runner.study_dir)
    assert [p.name for p in paths] == ["summary.csv", "summary.md", "search.png"]
    assert Image.open(paths[2]).size[0] > 400

    rows = list(csv.DictReader(paths[0].open()))
    assert [(r["rank"], r["trial"], r["status"]) for r in rows] == [
        ("1", "t000", "done"),
        ("2", "t001", "done"),
        ("", "t002", "not run"),
    ]
    assert float(rows[0]["optim.lr"]) == results[0].trial.params["optim.lr"]
    assert rows[0]["checkpoint"].endswith("lr/runs/digit_classifier/lr-t000/model.pt")
    md = paths[1].read_text()
    assert "| 1 | `t000` |" in md and "| - | `t002` |" in md
    assert "Trials took 0.5 min of wall time in all." in md  # 2 x 15 s of process time
    assert "**Best trial** (by validation accuracy): `t000`" in md
    assert "python -m tools.archive " in md and "![search](search.png)" in md


def test_ablation_report_has_means_spreads_recall_and_bar_charts(tmp_path: Path) -> None:
    study = study_from_dict(
        {
            "base": BASE,
            "seeds": [0, 1],
            "ablations": {"imbalance": {"classes": [3], "keep_fraction": 0.1}},
        },
        "imb",
    )
    scores = {
        "imbalance-balanced-s0": (0.96, 0.95, 0.95),
        "imbalance-balanced-s1": (0.94, 0.95, 0.93),
        "imbalance-imbalanced-s0": (0.90, 0.90, 0.40),
        "imbalance-imbalanced-s1": (0.92, 0.90, 0.50),
        "imbalance-imbalanced-weighted-s0": (0.93, 0.92, 0.80),
    }  # imbalanced-weighted-s1 "failed"
    runner, results = results_of(study, tmp_path, scores)
    paths = write_report(study, results, runner.study_dir)
    assert [p.name for p in paths][2:] == ["ablation_imbalance.png", "recall_imbalance.png"]
    md = paths[1].read_text()
    assert "## Ablation `imbalance` (mean ± std over 2 seeds)" in md
    assert "| balanced | 2/2 | 0.9500 ± 0.0141 | 0.9500 ± 0.0000 | 0.9400 ± 0.0141 |" in md
    assert "| imbalanced-weighted | 1/2 | 0.9300 | 0.9200 | 0.8000 |" in md
    assert "recall 3" in md.splitlines()[4]  # the cut class's recall in the trials table
    rows = list(csv.DictReader(paths[0].open()))
    assert rows[0]["trial"] == "imbalance-balanced-s0" and rows[0]["recall_3"] == "0.95"
    assert rows[-1]["status"] == "not run"


def test_no_finished_trial_still_writes_a_summary(tmp_path: Path) -> None:
    study = study_from_dict(
        {"base": BASE, "ablations": {"resolution": {"sizes": [24, 28]}}}, default_name="r"
    )
    runner, results = results_of(study, tmp_path, {})
    paths = write_report(study, results, runner.study_dir)
    assert [p.name for p in paths] == ["summary.csv", "summary.md"]
    assert "**No trial finished**" in paths[1].read_text()


def test_a_metric_the_report_lacks_is_an_error(tmp_path: Path) -> None:
    study = study_from_dict(
        {"base": BASE, "metric": "mean_dice", "ablations": {"resolution": {"sizes": [24]}}}, "m"
    )
    runner = StudyRunner(study, tmp_path)
    trial = plan_trials(study)[0]
    fake_run(runner, trial, 0.9, 0.9, 0.9)
    with pytest.raises(ValueError, match="'mean_dice' is not in trial"):
        collect(runner, trial, study.metric)
