"""`python -m training.scale_study training/studies/scenes_scale.yaml`: does the U-Net reach
pages of any size through training (scale augmentation) or through inference (mapping the
page to the training scale, in tiles)? Issue 15's study.

Every `training` arm (a label and its augment steps) trains the base config once per seed
(`python -m training.train`, one subprocess per trial through the sweep's runner, so a
timeout kills the whole trial). Every finished checkpoint is then served in-process
(`handlers.segmenter`) and scored on the same held-out `digit_pages` (64 to 1024 px, 1 to 100
digits of 16 to 112 px, digits of the test split) with each inference mode:

- `resize`: the page reduced so its longer side is the card's input side (64 px), one forward
  pass: the handler before issue 15 (which also squeezed the aspect ratio);
- `tiles`: the page at its own pixel size, in blended tiles, no scale mapping: what a model
  trained for every scale would need;
- `scaled_tiles`: the served default: the page mapped to the training objects' size (found
  by the model in a coarse pass), in tiles.

The modes are the handler's own `object_size` option (`mode_options`), so nothing here
re-implements serving. The 64 px test scenes come from each run's report.json (`objects.test`,
as served), so an augmentation's cost at the training scale shows too. Writes
`<out>/<study>/summary.{csv,md}` and a plot; `--docs DIR` copies both there.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .reporting import write_json
from .study_files import format_mean_std, load_rows, mean_std, save_figure, study_main
from .sweeps.runner import run_command

log = logging.getLogger(__name__)

MODES = ("resize", "tiles", "scaled_tiles")
PAGE_METRICS = ("f1", "label_accuracy", "mean_dice")
SCENE_METRICS = ("scene_f1", "scene_dice")
LABELS = {
    "f1": "pages F1",
    "label_accuracy": "pages label acc.",
    "mean_dice": "pages mean Dice",
    "scene_f1": "scenes F1",
    "scene_dice": "scenes mean Dice",
}


@dataclass
class ScaleStudy:
    """A validated study file (see training/studies/scenes_scale.yaml)."""

    name: str
    description: str
    base: Path  # the training config every arm starts from
    training: dict[str, list[dict[str, Any]]]  # arm label -> augment steps
    pages: dict[str, Any]  # digit_pages options of the held-out pages
    overrides: dict[str, Any] = field(default_factory=dict)  # the training budget
    inference: list[str] = field(default_factory=lambda: list(MODES))
    seeds: list[int] = field(default_factory=lambda: [0])
    trial_timeout: float = 1800


def load_scale_study(path: str | Path) -> ScaleStudy:
    """The study file, checked: unknown keys, a missing base config, unknown modes and empty
    arms are errors before anything trains."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text()) or {}
    known = set(ScaleStudy.__dataclass_fields__) - {"name"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    base = Path(raw["base"])
    if not base.is_file():
        raise FileNotFoundError(f"{path}: base {base} not found")
    inference = [str(m) for m in raw.get("inference", MODES)]
    bad = sorted(set(inference) - set(MODES))
    if bad:
        raise ValueError(f"{path}: unknown inference modes {bad}; known: {list(MODES)}")
    training = {str(k): list(v or []) for k, v in (raw.get("training") or {}).items()}
    if not training:
        raise ValueError(f"{path}: `training` needs at least one arm (label: augment steps)")
    return ScaleStudy(
        name=path.stem,
        description=str(raw.get("description", "")).strip(),
        base=base,
        training=training,
        pages=dict(raw.get("pages", {"n_test": 20})),
        overrides=dict(raw.get("overrides", {})),
        inference=inference,
        seeds=[int(s) for s in raw.get("seeds", [0])],
        trial_timeout=float(raw.get("trial_timeout", 1800)),
    )


def train_command(study: ScaleStudy, arm: str, seed: int, runs: Path) -> list[str]:
    """`python -m training.train <base> ...` for one arm and seed (pages are scored here, so
    the run's own `eval_pages` is switched off)."""
    overrides = {
        "output_dir": str(runs),
        "version": f"{arm}-s{seed}",
        "seed": seed,
        "augment": study.training[arm],
        "eval_pages": None,
        **study.overrides,
    }
    args = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items()]
    return [sys.executable, "-m", "training.train", str(study.base), *args]


def mode_options(mode: str, handler: Any, size: tuple[int, int]) -> dict[str, Any]:
    """The handler options that make it infer in `mode` on an image of `size` (w, h): an
    `object_size` that sets the scale (the handler's scale is typical / object_size)."""
    typical = handler.object_scale.typical
    if mode == "scaled_tiles":
        return {}
    if mode == "tiles":
        return {"object_size": typical}
    if mode == "resize":
        scale = min(1.0, max(handler.card.input.size) / max(size))
        return {"object_size": typical / scale}
    raise ValueError(f"unknown inference mode {mode!r}; known: {list(MODES)}")


def score_pages(checkpoint: Path, pages: Any, modes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Object and mask scores of one checkpoint on `pages` (a digit_pages split), per mode."""
    from handlers.segmenter import SegmenterHandler
    from model_src import load_checkpoint

    from .objects import Found, page_items, score_objects

    model, card = load_checkpoint(checkpoint)
    handler = SegmenterHandler.in_process(model, card)
    scores = {}
    for mode in modes:

        def predict(image: Any, mode: str = mode) -> tuple[list[Found], Any]:
            labels, objects = handler.segment(image, mode_options(mode, handler, image.size))
            return [Found(o["class"], tuple(o["bbox"])) for o in objects], labels

        scores[mode] = score_objects(page_items(pages), predict, len(card.classes))
    return scores


def run_study(study: ScaleStudy, out: Path, resume: bool = False) -> list[dict[str, Any]]:
    """Train and score every (seed, arm) trial, seed-major (a study cut short still compares
    every arm); one result file per trial, so `resume` skips finished ones."""
    from .data import build_splits

    study_dir = out / study.name
    runs = study_dir / "runs"
    base = yaml.safe_load(study.base.read_text())
    name, data_seed = base["name"], int(base.get("data", {}).get("seed", 0))
    pages = build_splits("digit_pages", seed=data_seed, **study.pages).test
    for seed in study.seeds:
        for arm in study.training:
            result = study_dir / "results" / f"{arm}-s{seed}.json"
            if resume and result.is_file():
                log.info("skip %s seed %d: done", arm, seed)
                continue
            trial_dir = runs / f"{arm}-s{seed}"
            run_dir = runs / name / f"{arm}-s{seed}"
            command = train_command(study, arm, seed, runs)
            trial_dir.mkdir(parents=True, exist_ok=True)
            (trial_dir / "command.txt").write_text(" ".join(command) + "\n")
            row: dict[str, Any] = {"arm": arm, "seed": seed, "status": "done"}
            if resume and (run_dir / "report.json").is_file():
                log.info("trial %s seed %d: trained, scoring %s", arm, seed, run_dir)
            else:
                log.info("trial %s seed %d: %s", arm, seed, " ".join(command))
                ended = run_command(command, trial_dir / "train.log", study.trial_timeout)
                if ended.timed_out or ended.returncode != 0:
                    row["status"] = "timeout" if ended.timed_out else f"failed ({ended.returncode})"
                    log.warning("trial %s seed %d %s: see %s", arm, seed, row["status"], trial_dir)
            if row["status"] == "done":
                report = json.loads((run_dir / "report.json").read_text())
                scenes = report.get("objects", {}).get("test", {})
                row.update(
                    scene_f1=scenes.get("f1"),
                    scene_dice=report["test"]["mean_dice"],
                    train_s=report["wall_time_s"],
                    modes=score_pages(run_dir / "model.pt", pages, study.inference),
                )
            result.parent.mkdir(parents=True, exist_ok=True)
            write_json(row, result)
            write_summary(study, study_dir)
    return write_summary(study, study_dir)


def summarise(study: ScaleStudy, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (arm, mode): mean and std over the arm's finished seeds."""
    table = []
    for arm in study.training:
        done = [r for r in rows if r["arm"] == arm and r["status"] == "done"]
        finished = f"{len(done)}/{len(study.seeds)}"
        for mode in study.inference:
            entry: dict[str, Any] = {"arm": arm, "mode": mode, "finished": finished}
            for key in PAGE_METRICS:
                entry[key] = mean_std([r["modes"][mode].get(key) for r in done])
            for key in (*SCENE_METRICS, "train_s"):
                entry[key] = mean_std([r.get(key) for r in done])
            table.append(entry)
    return table


def write_summary(study: ScaleStudy, study_dir: Path) -> list[dict[str, Any]]:
    rows = load_rows(study_dir)
    table = summarise(study, rows)
    study_dir.mkdir(parents=True, exist_ok=True)
    with (study_dir / "summary.csv").open("w", newline="") as f:
        keys = ["arm", "seed", "status", "mode", *PAGE_METRICS, *SCENE_METRICS, "train_s"]
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            base = {k: r.get(k) for k in ("arm", "seed", "status", *SCENE_METRICS, "train_s")}
            for mode, scores in (r.get("modes") or {"-": {}}).items():
                writer.writerow({**base, "mode": mode, **{k: scores.get(k) for k in PAGE_METRICS}})
    head = ["training", "inference", "seeds", *[LABELS[k] for k in (*PAGE_METRICS, *SCENE_METRICS)]]
    head.append("train s")
    lines = [
        f"# Study: {study.name}",
        "",
        study.description,
        "",
        f"Run with `python -m training.scale_study training/studies/{study.name}.yaml`.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for e in table:
        cells = [e["arm"], e["mode"], e["finished"]]
        cells += [format_mean_std(e[k]) for k in (*PAGE_METRICS, *SCENE_METRICS)]
        cells.append(format_mean_std(e["train_s"], 0))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Mean ± std over the finished seeds. Pages: {study.pages.get('n_test', '?')} held-out "
        "`digit_pages` (digits of the test split), the same for every trial, scored as served "
        "in-process (training/objects.py: a digit is found at box IoU >= 0.5; labels are the "
        "segmenter's own). Inference: `resize` (longer side to the card's input, one pass), "
        "`tiles` (the page's own pixels, no scale mapping), `scaled_tiles` (the served "
        "default: mapped to the training scale, in tiles). Scenes: the run's 64 px test "
        "scenes, as served (the same in every mode). `train s`: the run's wall clock.",
    ]
    plot = _plot(study, table, study_dir / f"{study.name}.png")
    if plot:
        lines += ["", f"![{study.name}]({plot.name})"]
    (study_dir / "summary.md").write_text("\n".join(lines) + "\n")
    return table


def _plot(study: ScaleStudy, table: list[dict[str, Any]], path: Path) -> Path | None:
    if not any(e["f1"][2] for e in table):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(PAGE_METRICS), figsize=(4 * len(PAGE_METRICS), 3.4))
    x = np.arange(len(study.inference))
    width = 0.8 / len(study.training)
    for k, metric in enumerate(PAGE_METRICS):
        ax = axes[k]
        for i, arm in enumerate(study.training):
            mine = {e["mode"]: e[metric] for e in table if e["arm"] == arm}
            means = [mine[m][0] for m in study.inference]
            stds = [mine[m][1] for m in study.inference]
            ax.bar(x + i * width, means, width, yerr=stds, capsize=2, label=f"trained: {arm}")
        ax.set_xticks(x + width * (len(study.training) - 1) / 2, study.inference)
        ax.set_ylim(0, 1)
        ax.set_title(LABELS[metric])
    axes[0].legend(fontsize=8)
    return save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    return study_main(
        argv, "python -m training.scale_study", __doc__, load_scale_study, run_study, write_summary
    )


if __name__ == "__main__":
    raise SystemExit(main())
