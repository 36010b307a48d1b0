"""What each trial achieved, read back from the files its run left (one source of truth).

The trainer's `report.json` holds the best-epoch validation scores, the test scores of those
same weights, per-class recall, wall time and throughput; the sweep's `trial.json` holds the
trial's status and process time. Nothing is recomputed here.

Trials are ranked by the VALIDATION metric: choosing on the test split would make the
reported test score an optimistic, selected number instead of an estimate.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.metrics import headline_metric
from training.state import monitor_mode

from .plan import Trial
from .runner import DONE, StudyRunner


@dataclass
class TrialResult:
    """One trial's row in the summary (`val`/`test` are None unless it finished)."""

    trial: Trial
    status: str
    run_dir: Path
    metric: str | None = None
    val: float | None = None
    test: float | None = None
    wall_s: float | None = None
    process_s: float | None = None
    images_per_s: float | None = None
    epochs: int | None = None
    best_epoch: int | None = None
    recall: dict[str, float | None] = field(default_factory=dict)
    order: int = 0  # position in the plan (ranking reorders; ablation charts keep this order)

    @property
    def ok(self) -> bool:
        return self.status == DONE and self.val is not None

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "model.pt"


def collect(
    runner: StudyRunner, trial: Trial, metric: str | None = None, order: int = 0
) -> TrialResult:
    """The result of `trial` as its files say (`metric`: None means the run's headline
    metric, see `headline_metric`; `order`: the trial's position in the plan).

    Raises:
        ValueError: `metric` is not among the scores the trial's report holds.
    """
    run_dir = runner.run_dir(trial)
    record = runner.trial_record(trial)
    report_path = run_dir / "report.json"
    if not report_path.is_file():
        status = record.get("status", "interrupted" if record else "not run")
        return TrialResult(trial, status, run_dir, process_s=record.get("process_s"), order=order)
    report = json.loads(report_path.read_text())
    name = metric or headline_metric(report["monitor"], report["task"])
    if name not in report["val"]:
        raise ValueError(
            f"metric {name!r} is not in trial {trial.id}'s scores ({', '.join(report['val'])})"
        )
    return TrialResult(
        trial=trial,
        status=DONE,
        run_dir=run_dir,
        metric=name,
        val=_number(report["val"].get(name)),
        test=_number(report["test"].get(name)),
        wall_s=report.get("wall_time_s"),
        process_s=record.get("process_s"),
        images_per_s=report.get("train_images_per_s"),
        epochs=report.get("epochs"),
        best_epoch=report.get("best_epoch"),
        recall={
            cls: _number(scores.get("recall"))
            for cls, scores in (report.get("per_class") or {}).items()
            if "recall" in scores
        },
        order=order,
    )


def rank(results: list[TrialResult]) -> list[TrialResult]:
    """Finished trials best first by validation metric (ties: faster first), then the rest."""
    finished = [r for r in results if r.ok]
    if not finished:
        return list(results)
    sign = -1.0 if monitor_mode(finished[0].metric or "") == "max" else 1.0
    ordered = sorted(finished, key=lambda r: (sign * (r.val or 0.0), r.wall_s or math.inf))
    return ordered + [r for r in results if not r.ok]


def best(results: list[TrialResult]) -> TrialResult | None:
    """The trial to ship: the best validation score among the finished ones."""
    ranked = rank(results)
    return ranked[0] if ranked and ranked[0].ok else None


def _number(value: Any) -> float | None:
    """Scores as floats; undefined ones (NaN, written as null) as None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
