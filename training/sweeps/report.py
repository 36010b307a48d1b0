"""The study's answer: summary.csv (every number), summary.md (the table to read) and plots.

`summary.md` lists trials best first by the validation metric, with the test metric of the
same weights, wall time, throughput and what each trial changed; ablations also get a table
of means and standard deviations over seeds, the imbalance ablation the recall of the classes
it cut. It ends with the best trial's checkpoint and the command that archives it.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import ImbalanceAblation, ParamSpec, Study
from .results import TrialResult, best, rank

CSV_NAME, MD_NAME, SEARCH_PLOT = "summary.csv", "summary.md", "search.png"


def write_report(
    study: Study,
    results: list[TrialResult],
    study_dir: Path,
    plots: bool = True,
) -> list[Path]:
    """Write summary.csv, summary.md and (with `plots`) the figures; returns the paths."""
    study_dir.mkdir(parents=True, exist_ok=True)
    ranked = rank(results)
    figures = write_plots(study, ranked, study_dir) if plots else _existing_plots(study, study_dir)
    paths = [write_csv(ranked, study_dir / CSV_NAME)]
    paths.append(write_markdown(study, ranked, study_dir / MD_NAME, figures))
    return paths + figures


# --- tables ------------------------------------------------------------------------------


def param_columns(results: Sequence[TrialResult]) -> list[str]:
    """The changed parameters, in first-seen order (sampled keys, or group and seed)."""
    columns: list[str] = []
    for r in results:
        columns += [k for k in r.trial.params if k not in columns]
    return columns


def focus_classes(study: Study, results: Sequence[TrialResult]) -> list[str]:
    """Class names whose recall the summary shows: those an imbalance ablation cut."""
    names = next((list(r.recall) for r in results if r.recall), [])
    indices = [
        c for a in study.ablations if isinstance(a.spec, ImbalanceAblation) for c in a.spec.classes
    ]
    return [names[i] for i in dict.fromkeys(indices) if 0 <= i < len(names)]


def write_csv(ranked: Sequence[TrialResult], path: Path) -> Path:
    """Every trial with every number (all classes' recall included), best first."""
    params = param_columns(ranked)
    metric = _metric(ranked)
    classes = next((list(r.recall) for r in ranked if r.recall), [])
    header = ["rank", "trial", "status", *params, f"val_{metric}", f"test_{metric}"]
    header += ["best_epoch", "epochs", "wall_s", "process_s", "images_per_s", "checkpoint"]
    header += [f"recall_{c}" for c in classes]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, r in enumerate(ranked, 1):
            row = [i if r.ok else "", r.trial.id, r.status]
            row += [r.trial.params.get(p, "") for p in params]
            row += [_blank(r.val), _blank(r.test), _blank(r.best_epoch), _blank(r.epochs)]
            row += [_blank(r.wall_s), _blank(r.process_s), _blank(r.images_per_s)]
            row += [display_path(r.checkpoint) if r.ok else ""]
            row += [_blank(r.recall.get(c)) for c in classes]
            writer.writerow(row)
    return path


def write_markdown(
    study: Study,
    ranked: Sequence[TrialResult],
    path: Path,
    figures: Sequence[Path],
) -> Path:
    """The human-readable summary (see the module docstring)."""
    lines = [f"# Study `{study.name}`", ""]
    if study.description:
        lines += [study.description.strip(), ""]
    lines += [_setup_line(study, ranked), ""]
    lines += trials_table(study, ranked)
    for group in [a.group for a in study.ablations]:
        lines += ["", *ablation_table(study, group, ranked)]
    lines += ["", *best_lines(ranked)]
    if figures:
        lines += ["", "## Plots", ""]
        lines += [f"![{f.stem}]({f.name})" for f in figures]
    path.write_text("\n".join(lines) + "\n")
    return path


def trials_table(study: Study, ranked: Sequence[TrialResult]) -> list[str]:
    """One row per trial, best validation score first."""
    metric = _metric(ranked)
    params = param_columns(ranked)
    focus = focus_classes(study, ranked)
    header = ["#", "trial", *params, f"val {metric}", f"test {metric}"]
    header += [f"recall {c}" for c in focus] + ["epochs", "wall s", "images/s", "status"]
    rows = []
    for i, r in enumerate(ranked, 1):
        row = [str(i) if r.ok else "-", f"`{r.trial.id}`"]
        row += [_fmt(r.trial.params.get(p)) for p in params]
        row += [_fmt(r.val), _fmt(r.test)] + [_fmt(r.recall.get(c)) for c in focus]
        row += [_fmt(r.epochs), _fmt(r.wall_s, 1), _fmt(r.images_per_s, 0), r.status]
        rows.append(row)
    return _table(header, rows)


def ablation_table(study: Study, group: str, ranked: Sequence[TrialResult]) -> list[str]:
    """Per variant: mean ± standard deviation over its seeds (val, test, cut-class recall)."""
    metric = _metric(ranked)
    focus = focus_classes(study, ranked)
    rows = []
    seeds = 1
    for variant, members in variant_groups(ranked, group):
        done = [r for r in members if r.ok]
        seeds = max(seeds, len(members))
        row = [variant, f"{len(done)}/{len(members)}"]
        row += [_mean_std([r.val for r in done]), _mean_std([r.test for r in done])]
        row += [_mean_std([r.recall.get(c) for r in done]) for c in focus]
        rows.append(row)
    header = ["variant", "finished", f"val {metric}", f"test {metric}"]
    header += [f"recall {c}" for c in focus]
    spread = f" (mean ± std over {seeds} seeds)" if seeds > 1 else ""
    return [f"## Ablation `{group}`{spread}", "", *_table(header, rows)]


def variant_groups(
    results: Sequence[TrialResult], group: str
) -> list[tuple[str, list[TrialResult]]]:
    """The group's variants in planned order, each with its trials (one per seed)."""
    ordered = sorted((r for r in results if r.trial.group == group), key=lambda r: r.order)
    variants: dict[str, list[TrialResult]] = {}
    for r in ordered:
        variants.setdefault(r.trial.variant or "", []).append(r)
    return list(variants.items())


def best_lines(ranked: Sequence[TrialResult]) -> list[str]:
    """The best trial, its checkpoint, and how to archive it for serving."""
    top = best(list(ranked))
    if top is None:
        return ["**No trial finished**: see each trial's `train.log` under `runs/`."]
    checkpoint = display_path(top.checkpoint)
    return [
        f"**Best trial** (by validation {top.metric}): `{top.trial.id}`, "
        f"val {_fmt(top.val)}, test {_fmt(top.test)}.",
        "",
        f"Checkpoint: `{checkpoint}`",
        "",
        f"Archive it for serving: `python -m tools.archive {checkpoint}` "
        f"(the card's name and version give the archive name).",
    ]


def _setup_line(study: Study, ranked: Sequence[TrialResult]) -> str:
    base = display_path(study.base)
    changed = " ".join(f"`{o}`" for o in study.base_overrides()) or "no overrides"
    if study.search is not None:
        space = study.search
        what = f"{space.sampler} search, seed {space.seed}"
    else:
        what = "ablations " + ", ".join(
            f"`{a.group}`" + ("" if a.group == a.kind else f" ({a.kind})") for a in study.ablations
        )
    if study.seeds:
        what += f", seeds {study.seeds}"
    done = sum(r.ok for r in ranked)
    # The cost of the study is its trials' process time (startup included), summed from the
    # trial records: a resumed invocation's own elapsed time would say nothing about it.
    spent = [r.process_s for r in ranked if r.process_s is not None]
    took = f" Trials took {sum(spent) / 60:.1f} min of wall time in all." if spent else ""
    return (
        f"Base `{base}` with {changed}; {what}. Ranked by validation {_metric(ranked)} "
        f"(test: the same weights on the test split). {done}/{len(ranked)} trials finished.{took}"
    )


# --- plots -------------------------------------------------------------------------------


def write_plots(study: Study, ranked: Sequence[TrialResult], study_dir: Path) -> list[Path]:
    """search.png (metric vs each searched parameter), one bar chart per ablation group and,
    for an imbalance group, per-class recall."""
    finished = [r for r in ranked if r.ok]
    if not finished:
        return []
    plt = _pyplot()
    paths = []
    if study.search is not None:
        paths.append(plot_search(plt, study.search.params, finished, study_dir / SEARCH_PLOT))
    for ablation in study.ablations:
        paths.append(plot_ablation(plt, ablation.group, ranked, study_dir))
        if isinstance(ablation.spec, ImbalanceAblation):
            paths.append(plot_recall(plt, ablation.group, ranked, study, study_dir))
    return paths


def plot_search(
    plt: Any, params: Sequence[ParamSpec], finished: Sequence[TrialResult], path: Path
) -> Path:
    """Validation (filled) and test (hollow) metric against each searched parameter; a log
    axis for log-sampled parameters and for choices spanning a wide range (batch sizes)."""
    metric = finished[0].metric
    top = finished[0]
    fig, axes = plt.subplots(1, len(params), figsize=(4.2 * len(params), 3.6), squeeze=False)
    for ax, param in zip(axes[0], params, strict=True):
        xs = [_x(param, r.trial.params[param.key]) for r in finished]
        ax.scatter(xs, [r.val for r in finished], label=f"val {metric}", zorder=3)
        ax.scatter(xs, [r.test for r in finished], facecolors="none", edgecolors="C1", label="test")
        ax.scatter(
            [_x(param, top.trial.params[param.key])], [top.val], marker="*", s=220,
            color="C3", label=f"best ({top.trial.id})", zorder=4,
        )  # fmt: skip
        _axis(ax, param)
        ax.set_xlabel(param.key)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric)
    axes[0][0].legend(fontsize=8)
    return _save(plt, fig, path)


def plot_ablation(plt: Any, group: str, ranked: Sequence[TrialResult], study_dir: Path) -> Path:
    """Bars of the mean val and test metric per variant; error bars (one standard deviation)
    and the single seeds as dots when several seeds ran."""
    metric = _metric(ranked)
    variants = variant_groups(ranked, group)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(variants) + 2), 3.8))
    values: list[float] = []
    width = 0.38
    for offset, split, color in ((-width / 2, "val", "C0"), (width / 2, "test", "C1")):
        for i, (_, members) in enumerate(variants):
            scores = [getattr(r, split) for r in members if r.ok and getattr(r, split) is not None]
            if not scores:
                continue
            values += scores
            mean = statistics.fmean(scores)
            err = statistics.stdev(scores) if len(scores) > 1 else None
            ax.bar(i + offset, mean, width, yerr=err, capsize=4, color=color,
                   label=f"{split} {metric}" if i == 0 else None)  # fmt: skip
            if len(scores) > 1:
                ax.scatter([i + offset] * len(scores), scores, color="k", s=8, zorder=3)
    ax.set_xticks(range(len(variants)), [v for v, _ in variants], rotation=20, ha="right")
    _zoom(ax, values, metric)
    ax.set_title(f"ablation: {group}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, study_dir / f"ablation_{group}.png")


def plot_recall(
    plt: Any, group: str, ranked: Sequence[TrialResult], study: Study, study_dir: Path
) -> Path:
    """Test recall of every class per variant (mean over seeds); the cut classes marked."""
    variants = variant_groups(ranked, group)
    classes = next((list(r.recall) for r in ranked if r.recall), [])
    focus = set(focus_classes(study, ranked))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(classes) + 2), 3.8))
    width = 0.8 / max(1, len(variants))
    for j, (variant, members) in enumerate(variants):
        means = []
        for c in classes:
            scores = [r.recall.get(c) for r in members if r.ok]
            kept = [s for s in scores if s is not None]
            means.append(statistics.fmean(kept) if kept else math.nan)
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(classes))]
        ax.bar(xs, means, width, label=variant)
    labels = [f"{c}*" if c in focus else c for c in classes]
    ax.set_xticks(range(len(classes)), labels)
    ax.set_xlabel("class (* cut in training)")
    ax.set_ylabel("test recall")
    ax.set_ylim(0, 1.22)  # headroom for the legend above the bars
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_title(f"per-class recall: {group}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=len(variants), loc="upper center")
    return _save(plt, fig, study_dir / f"recall_{group}.png")


def _existing_plots(study: Study, study_dir: Path) -> list[Path]:
    names = [SEARCH_PLOT] + [f"ablation_{a.group}.png" for a in study.ablations]
    names += [f"recall_{a.group}.png" for a in study.ablations]
    return [study_dir / n for n in names if (study_dir / n).is_file()]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless: studies run on servers without a display
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _x(param: ParamSpec, value: Any) -> Any:
    """Numbers plot as themselves; other choices at their index in the choice list."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return param.values.index(value)


def _axis(ax: Any, param: ParamSpec) -> None:
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in param.values)
    if param.log_scale:
        ax.set_xscale("log", base=2 if param.kind == "choice" else 10)
    if param.kind in ("log_uniform", "uniform", "int_uniform"):
        low, high = param.values  # show the whole searched range, not only the sampled part
        pad = (high / low) ** 0.03 if param.log_scale else 0.03 * (high - low)
        ax.set_xlim(*((low / pad, high * pad) if param.log_scale else (low - pad, high + pad)))
    if param.kind == "choice":
        ticks = list(param.values) if numeric else list(range(len(param.values)))
        ax.set_xticks(ticks, [str(v) for v in param.values])
        ax.minorticks_off()
        if param.log_scale:  # keep the end choices off the frame
            ax.set_xlim(min(ticks) / 1.3, max(ticks) * 1.3)
        elif not numeric:
            ax.set_xlim(-0.5, len(ticks) - 0.5)


def _zoom(ax: Any, values: Sequence[float], metric: str | None) -> None:
    """Scores close together (accuracies of 0.95 and 0.97) vanish on a 0-based axis: start
    the axis near the lowest score instead, and say so in the label."""
    if not values:
        return
    low, high = min(values), max(values)
    span = max(high - low, 1e-3)
    bottom = max(0.0, low - 1.5 * span)
    ax.set_ylim(bottom, high + 0.6 * span)
    ax.set_ylabel(f"{metric}" + (" (axis not from 0)" if bottom > 0 else ""))


# --- formatting --------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        if digits and (abs(value) < 1e-2 and value != 0):
            return f"{value:.3g}"
        return f"{value:.{digits}f}"
    return str(value)


def _mean_std(values: Sequence[float | None]) -> str:
    kept = [v for v in values if v is not None]
    if not kept:
        return "-"
    if len(kept) == 1:
        return f"{kept[0]:.4f}"
    return f"{statistics.fmean(kept):.4f} ± {statistics.stdev(kept):.4f}"


def _metric(results: Sequence[TrialResult]) -> str:
    return next((r.metric for r in results if r.metric), "metric")


def _blank(value: Any) -> Any:
    return "" if value is None else value


def display_path(path: Path) -> str:
    """Relative to the working directory when below it (what a user pastes), else absolute."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return os.fspath(resolved)
