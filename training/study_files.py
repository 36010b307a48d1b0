"""What the study runners (`training.arch_study`, `training.scale_study`) share: one result
file per trial, mean ± std over seeds, and the summary printed and copied to the docs.

Why a module of its own: both runners train trials as subprocesses and summarise them the
same way, but compare different things (architectures; training against inference modes).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def load_rows(study_dir: Path) -> list[dict[str, Any]]:
    """The finished trials' result files, in file-name order."""
    return [json.loads(p.read_text()) for p in sorted((study_dir / "results").glob("*.json"))]


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """(mean, sample std, n) of the defined values; NaN, NaN, 0 when there are none."""
    v = [x for x in values if x is not None and not math.isnan(x)]
    if not v:
        return math.nan, math.nan, 0
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0), len(v)


def format_mean_std(ms: tuple[float, float, int], digits: int = 3) -> str:
    """`mean ± std`, the mean alone for one seed, `-` for none."""
    mean, std, n = ms
    if n == 0:
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def publish_summary(study_dir: Path, name: str, docs: Path | None) -> None:
    """Print `summary.md`, and copy it (as `<name>.md`) and the plot `<name>.png` to `docs`."""
    print((study_dir / "summary.md").read_text())
    if docs:
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copy(study_dir / "summary.md", docs / f"{name}.md")
        png = study_dir / f"{name}.png"
        if png.is_file():
            shutil.copy(png, docs / png.name)


def study_main(
    argv: Sequence[str] | None,
    prog: str,
    description: str | None,
    load: Callable[[str], Any],
    run: Callable[..., Any],
    write_summary: Callable[[Any, Path], Any],
) -> int:
    """The study runners' command line: `<study.yaml> [--out DIR] [--resume] [--docs DIR]
    [--summary-only]`; `load` reads the study file, `run(study, out, resume=...)` runs it."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("study")
    parser.add_argument("--out", type=Path, default=Path("studies"))
    parser.add_argument("--resume", action="store_true", help="skip finished trials")
    parser.add_argument("--docs", type=Path, default=None, help="copy summary + plot here")
    parser.add_argument("--summary-only", action="store_true", help="rewrite the summary")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    study = load(args.study)
    if args.summary_only:
        write_summary(study, args.out / study.name)
    else:
        run(study, args.out, resume=args.resume)
    publish_summary(args.out / study.name, study.name, args.docs)
    return 0


def save_figure(fig: Any, path: Path) -> Path:
    """Write a study's matplotlib figure (tight layout, 90 dpi) and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
