"""Optimizers and learning-rate schedules by name.

`Schedule` hides the one awkward difference between PyTorch schedulers: some step every
batch (`cosine` with warm-up, `onecycle`), some every epoch (`step`), and `plateau` needs the
validation metric. The loop calls `after_batch()` and `after_epoch(metric)`; each does the
right thing or nothing.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.optim import lr_scheduler

from .config import OptimConfig, ScheduleConfig


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD; biases and normalisation weights get no weight decay.

    Decaying a BatchNorm scale or a bias toward 0 only fights the normalisation; the usual
    practice (timm, torchvision references) exempts every 1-D parameter.
    """
    groups = _param_groups(model, config.weight_decay)
    if config.name == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov
        )
    cls = torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam
    return cls(groups, lr=config.lr)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class WarmupCosine:
    """LR factor: linear warm-up over `warmup` steps, then cosine from 1 down to `floor`.

    A callable object (not a lambda) so LambdaLR saves its settings in `state_dict()`.
    """

    def __init__(self, warmup: int, total: int, floor: float) -> None:
        self.warmup, self.total, self.floor = warmup, max(total, 1), floor

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Schedule:
    """A PyTorch LR scheduler plus when to step it."""

    def __init__(self, scheduler: Any | None, per_batch: bool, needs_metric: bool) -> None:
        self.scheduler = scheduler
        self.per_batch = per_batch
        self.needs_metric = needs_metric

    def after_batch(self) -> None:
        if self.scheduler is not None and self.per_batch:
            self.scheduler.step()

    def after_epoch(self, metric: float) -> None:
        if self.scheduler is None or self.per_batch:
            return
        if self.needs_metric:
            if not math.isnan(metric):
                self.scheduler.step(metric)
        else:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scheduler is None else self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)


def build_schedule(
    optimizer: torch.optim.Optimizer,
    config: ScheduleConfig,
    epochs: int,
    steps_per_epoch: int,
    monitor_mode: str,
) -> Schedule:
    """The schedule a config names, sized for `epochs * steps_per_epoch` optimizer steps."""
    total = epochs * steps_per_epoch
    if config.name == "none":
        return Schedule(None, per_batch=False, needs_metric=False)
    if config.name == "step":
        step = lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
        return Schedule(step, per_batch=False, needs_metric=False)
    if config.name == "plateau":
        plateau = lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode=monitor_mode,
            factor=config.factor,
            patience=config.patience,
            min_lr=config.min_lr,
        )
        return Schedule(plateau, per_batch=False, needs_metric=True)
    if config.name == "onecycle":
        onecycle = lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=total,
            pct_start=config.pct_start,
        )
        return Schedule(onecycle, per_batch=True, needs_metric=False)
    base_lr = optimizer.param_groups[0]["lr"]
    factor = WarmupCosine(
        round(config.warmup_epochs * steps_per_epoch), total, config.min_lr / base_lr
    )
    return Schedule(lr_scheduler.LambdaLR(optimizer, factor), per_batch=True, needs_metric=False)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
