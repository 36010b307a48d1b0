"""What a run leaves next to its model: metrics.csv, curves.png, report.json.

All of it is written by rank 0 only, from the epoch history the loop keeps (a list of flat
dicts, one per epoch), so a resumed run rewrites complete files rather than appending.
TensorBoard and W&B are in `training.tracking`.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def write_metrics_csv(history: list[dict[str, Any]], path: Path) -> Path:
    """One row per epoch: epoch, lr, time and every train_*/val_* metric."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
    return path


def plot_curves(history: list[dict[str, Any]], metric: str, path: Path) -> Path | None:
    """Loss and `metric` per epoch, train and validation, side by side."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers and CI
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, name in zip(axes, ("loss", metric), strict=True):
        for split in ("train", "val"):
            values = [row.get(f"{split}_{name}", math.nan) for row in history]
            ax.plot(epochs, values, marker="o", markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_json(data: dict[str, Any], path: Path) -> Path:
    """JSON with NaN (an undefined score) written as null, which strict parsers accept."""
    path.write_text(json.dumps(json_safe(data), indent=2) + "\n")
    return path


def json_safe(value: Any) -> Any:
    """NaN and infinities -> None, tuples -> lists, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
