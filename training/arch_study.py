"""`python -m training.arch_study training/studies/scenes_architectures.yaml`: segmentation
architectures compared on the same scenes, split and metrics.

Why not `training.sweep`: a sweep varies ONE cvserve config, and YOLO-seg is not a cvserve
config (it trains through ultralytics). This runner reuses the sweep's subprocess runner
(`training.sweeps.runner.run_command`: one process per trial, a timeout, a log) and gives each
architecture its own trial per seed:

- cvserve architectures: `python -m training.train <config> ...` with the study's data and
  budget overrides; scores from report.json's `objects.test` (the segmenter served
  in-process: scale, tiles, objects), which is what YOLO's scores are computed like;
- YOLO-seg: `python -m training.yolo.runner` (optional extra, training/yolo), the same data
  split and seed, scored with the same `ObjectScores`.

After each cvserve trial, the in-process CPU latency per scene (the served handler's
`segment`, one image at a time, one torch thread, median of `latency_items` test scenes) and
the parameter count are measured here. Trials run seed-major (every architecture at seed 0,
then seed 1), so a study cut short still compares all architectures. `--resume` skips
trials whose results exist. Writes `<out>/<study>/summary.{csv,md}` and a plot, and with
`--docs DIR` copies the summary and plot there.
"""

from __future__ import annotations

import csv
import json
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .reporting import write_json
from .study_files import format_mean_std, load_rows, mean_std, save_figure, study_main
from .sweeps.runner import CommandResult, run_command

log = logging.getLogger(__name__)

METRICS = ("mean_dice", "foreground_dice", "f1", "label_accuracy")
LABELS = {
    "mean_dice": "digit mean Dice",
    "foreground_dice": "fg Dice",
    "f1": "object F1",
    "label_accuracy": "label acc.",
}


@dataclass
class ArchStudy:
    """A validated study file (see training/studies/scenes_architectures.yaml)."""

    name: str
    description: str
    data: dict[str, Any]  # name, seed, options: the scenes every architecture sees
    seeds: list[int]
    models: dict[str, Path]  # cvserve architectures: label -> training config
    overrides: dict[str, Any] = field(default_factory=dict)  # the cvserve budget
    yolo: dict[str, Any] | None = None  # runner options: time_minutes, epochs, imgsz, batch
    trial_timeout: float = 1800
    latency_items: int = 50


def load_arch_study(path: str | Path) -> ArchStudy:
    path = Path(path)
    raw = yaml.safe_load(path.read_text()) or {}
    known = {f for f in ArchStudy.__dataclass_fields__} - {"name"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    models = {str(k): Path(v) for k, v in raw.get("models", {}).items()}
    for label, config in models.items():
        if not config.is_file():
            raise FileNotFoundError(f"{path}: models.{label}: {config} not found")
    return ArchStudy(
        name=path.stem,
        description=str(raw.get("description", "")).strip(),
        data=dict(raw["data"]),
        seeds=[int(s) for s in raw.get("seeds", [0])],
        models=models,
        overrides=dict(raw.get("overrides", {})),
        yolo=raw.get("yolo"),
        trial_timeout=float(raw.get("trial_timeout", 1800)),
        latency_items=int(raw.get("latency_items", 50)),
    )


def _cvserve_command(study: ArchStudy, config: Path, runs: Path, label: str, seed: int):
    data = study.data
    overrides = {
        "output_dir": str(runs),
        "version": f"{label}-s{seed}",
        "seed": seed,
        "data.name": data["name"],
        "data.seed": data.get("seed", 0),
        "eval_pages": None,
        **{f"data.options.{k}": v for k, v in data.get("options", {}).items()},
        **study.overrides,
    }
    args = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in overrides.items()]
    return [sys.executable, "-m", "training.train", str(config), *args]


def _yolo_command(study: ArchStudy, out: Path, seed: int) -> list[str]:
    y, data = study.yolo or {}, study.data
    command = [sys.executable, "-m", "training.yolo.runner", "--out", str(out)]
    command += ["--dataset", data["name"], "--data-seed", str(data.get("seed", 0))]
    command += [f"--option={k}={v}" for k, v in data.get("options", {}).items()]
    command += ["--seed", str(seed), "--epochs", str(y.get("epochs", 300))]
    command += ["--imgsz", str(y.get("imgsz", 64)), "--batch", str(y.get("batch", 16))]
    if y.get("time_minutes"):
        command += ["--time-minutes", str(y["time_minutes"])]
    return command


def cvserve_latency(checkpoint: Path, test: Any, items: int) -> tuple[float, int]:
    """(median ms per scene through the in-process handler at 1 thread, parameters)."""
    import torch

    from handlers.segmenter import SegmenterHandler
    from model_src import load_checkpoint

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, card = load_checkpoint(checkpoint)
        handler = SegmenterHandler.in_process(model, card)
        times = []
        for i in range(min(items + 1, len(test))):
            image = test[i][0]
            started = time.perf_counter()
            handler.segment(image)
            times.append(time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    return 1000 * statistics.median(times[1:]), sum(p.numel() for p in model.parameters())


def _finished_run(study: ArchStudy, runs: Path, label: str, seed: int) -> float | None:
    """The recorded trial seconds of a finished cvserve run (report.json written), or None."""
    if label not in study.models:
        return None
    name = yaml.safe_load(study.models[label].read_text())["name"]
    report = runs / name / f"{label}-s{seed}" / "report.json"
    if not report.is_file():
        return None
    return float(json.loads(report.read_text())["wall_time_s"])


def run_study(study: ArchStudy, out: Path, resume: bool = False) -> list[dict[str, Any]]:
    """Run every (seed, architecture) trial; returns one result row per finished trial."""
    from training.data import build_splits

    study_dir = out / study.name
    runs = study_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    test = build_splits(
        study.data["name"], seed=study.data.get("seed", 0), **study.data.get("options", {})
    ).test
    labels = [*study.models, *(["yolov8n-seg"] if study.yolo else [])]
    for seed in study.seeds:
        for label in labels:
            result = study_dir / "results" / f"{label}-s{seed}.json"
            if resume and result.is_file():
                log.info("skip %s seed %d: done", label, seed)
                continue
            trial_dir = runs / f"{label}-s{seed}"
            trial_dir.mkdir(parents=True, exist_ok=True)
            if label in study.models:
                command = _cvserve_command(study, study.models[label], runs, label, seed)
            else:
                command = _yolo_command(study, trial_dir, seed)
            (trial_dir / "command.txt").write_text(" ".join(command) + "\n")
            log.info("trial %s seed %d: %s", label, seed, " ".join(command))
            trained = _finished_run(study, runs, label, seed) if resume else None
            if trained is not None:  # trained, but the study stopped before scoring it
                log.info("trial %s seed %d: reusing %s", label, seed, trained)
                ended = CommandResult(0, trained, False)
            else:
                ended = run_command(command, trial_dir / "train.log", study.trial_timeout)
            row: dict[str, Any] = {"arch": label, "seed": seed, "status": "done"}
            if ended.timed_out or ended.returncode != 0:
                row["status"] = "timeout" if ended.timed_out else f"failed ({ended.returncode})"
                log.warning("trial %s seed %d %s: see %s", label, seed, row["status"], trial_dir)
            elif label in study.models:
                name = yaml.safe_load(study.models[label].read_text())["name"]
                run_dir = runs / name / f"{label}-s{seed}"
                report = json.loads((run_dir / "report.json").read_text())
                scores = report["objects"]["test"]
                latency, params = cvserve_latency(run_dir / "model.pt", test, study.latency_items)
                row.update({k: scores.get(k) for k in METRICS})
                row.update(
                    train_s=report["wall_time_s"],
                    epochs=report["config"]["epochs"],
                    params=params,
                    latency_ms=round(latency, 2),
                )
            else:
                report = json.loads((trial_dir / "report.json").read_text())
                scores = report["test"]
                row.update({k: scores.get(k) for k in METRICS})
                row.update(
                    train_s=report["train_seconds"],
                    epochs=report.get("epochs_done", report["epochs"]),
                    params=scores["params"],
                    latency_ms=scores["latency_ms"],
                )
            row["trial_s"] = round(ended.seconds, 1)
            result.parent.mkdir(parents=True, exist_ok=True)
            write_json(row, result)
            write_summary(study, study_dir)
    return write_summary(study, study_dir)


def summarise(study: ArchStudy, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per architecture: mean and std over its finished seeds."""
    order = [*study.models, "yolov8n-seg"]
    table = []
    for label in order:
        mine = [r for r in rows if r["arch"] == label]
        done = [r for r in mine if r["status"] == "done"]
        if not mine:
            continue
        entry: dict[str, Any] = {"arch": label, "finished": f"{len(done)}/{len(study.seeds)}"}
        for key in (*METRICS, "train_s", "latency_ms", "epochs"):
            entry[key] = mean_std([r.get(key) for r in done])
        entry["params"] = done[0]["params"] if done else None
        table.append(entry)
    return table


def write_summary(study: ArchStudy, study_dir: Path) -> list[dict[str, Any]]:
    rows = load_rows(study_dir)
    table = summarise(study, rows)
    with (study_dir / "summary.csv").open("w", newline="") as f:
        keys = ["arch", "seed", "status", *METRICS, "train_s", "epochs", "params", "latency_ms"]
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    head = ["architecture", "seeds", *[LABELS[m] for m in METRICS]]
    head += ["params", "train s", "epochs", "CPU ms/scene"]
    lines = [
        f"# Study: {study.name}",
        "",
        study.description,
        "",
        f"Run with `python -m training.arch_study training/studies/{study.name}.yaml`.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for e in table:
        params = f"{e['params'] / 1e6:.2f} M" if e["params"] else "-"
        cells = [e["arch"], e["finished"], *[format_mean_std(e[m]) for m in METRICS], params]
        cells += [format_mean_std(e[k], d) for k, d in (("train_s", 0), ("epochs", 0))]
        cells.append(format_mean_std(e["latency_ms"], 1))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Mean ± std over the finished seeds, on the held-out test scenes. Scores as served "
        "in-process: class masks and objects at the scene's size; object F1 at box IoU >= 0.5, "
        "label accuracy over the matched objects (training/objects.py). `train s`: the "
        "training run's wall clock (cvserve: the whole run, validation and test included; "
        "YOLO: ultralytics' train call, per-epoch validation included). CPU ms/scene: median "
        "in-process latency of one 64 px scene, one torch thread, pre- and post-processing "
        "included. Served throughput is not measured here.",
    ]
    plot = _plot(table, study_dir / f"{study.name}.png")
    if plot:
        lines += ["", f"![{study.name}]({plot.name})"]
    (study_dir / "summary.md").write_text("\n".join(lines) + "\n")
    return table


def _plot(table: list[dict[str, Any]], path: Path) -> Path | None:
    if not table:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    x = np.arange(len(METRICS))
    width = 0.8 / len(table)
    for i, e in enumerate(table):
        means = [e[m][0] for m in METRICS]
        stds = [e[m][1] for m in METRICS]
        axes[0].bar(x + i * width, means, width, yerr=stds, label=e["arch"], capsize=2)
    axes[0].set_xticks(x + width * (len(table) - 1) / 2, [LABELS[m] for m in METRICS])
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    axes[0].set_title("test scores (mean ± std over seeds)")
    for e in table:
        axes[1].scatter(e["latency_ms"][0], e["mean_dice"][0], s=40)
        axes[1].annotate(e["arch"], (e["latency_ms"][0], e["mean_dice"][0]), fontsize=8)
    axes[1].set_xlabel("CPU ms per 64 px scene (1 thread)")
    axes[1].set_ylabel("digit mean Dice")
    axes[1].set_title("accuracy vs latency")
    return save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    return study_main(
        argv, "python -m training.arch_study", __doc__, load_arch_study, run_study, write_summary
    )


if __name__ == "__main__":
    raise SystemExit(main())
