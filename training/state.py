"""The loop's bookkeeping: epoch, best monitored value, early stopping, epoch history.

Kept as plain data (`to_dict` / `from_dict`) so it travels inside `last.pt` and a resumed run
picks up exactly where the interrupted one stopped.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


def monitor_mode(metric: str) -> str:
    """The direction of improvement: `min` for losses, `max` for every score."""
    return "min" if metric.endswith("loss") else "max"


@dataclass
class TrainState:
    """Where a run stands after `epoch` completed epochs."""

    monitor: str
    mode: str = "max"
    epoch: int = 0  # completed epochs (so epochs are numbered from 1 in rows and cards)
    best: float = math.nan
    best_epoch: int = 0  # 0: none yet
    bad_epochs: int = 0  # epochs since the last improvement
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    train_images: int = 0
    wall_seconds: float = 0.0  # previous sessions of a resumed run

    def improved(self, value: float) -> bool:
        """Is `value` better than the best so far? NaN never is."""
        if math.isnan(value):
            return False
        if math.isnan(self.best):
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def end_epoch(self, row: dict[str, Any], value: float) -> bool:
        """Record a finished epoch; returns True when it is the new best."""
        self.history.append(row)
        self.epoch += 1
        better = self.improved(value)
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, self.epoch, 0
        else:
            self.bad_epochs += 1
        return better

    def should_stop(self, patience: int | None) -> bool:
        """Early stopping: `patience` epochs in a row without a better monitored value."""
        return patience is not None and self.bad_epochs >= patience

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        return cls(**data)
