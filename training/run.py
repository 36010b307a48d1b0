"""Assemble a run from its config (data, model, loss, optimizer, schedule) and restore one.

`prepare_run` builds every piece in a fixed, seeded order; `resume_run` then overwrites the
mutable ones from `last.pt`; `resume_payload` is the inverse. The loop itself lives in
`training.engine`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_src import build_model, read_checkpoint

from . import distributed
from .checkpointing import arch_kwargs, config_changes, load_resume
from .config import Config, config_to_dict
from .loaders import DataBundle, build_data
from .losses import build_loss
from .metrics import METRIC_NAMES, build_metrics
from .optim import Schedule, build_optimizer, build_schedule
from .runtime import Runtime, build_runtime, capture_rng, restore_rng, seed_everything
from .state import TrainState, monitor_mode
from .tracking import Tracker, build_tracker, check_tracking

log = logging.getLogger(__name__)


@dataclass
class Run:
    """Everything one training run holds. `model` is the plain module (evaluation, saving);
    `train_model` is what the optimizer steps through (DDP-wrapped when distributed)."""

    config: Config  # resolved: task, input spec and ignore_index filled in from the data
    runtime: Runtime
    data: DataBundle
    model: nn.Module
    train_model: nn.Module
    arch_kwargs: dict[str, Any]
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    scaler: torch.amp.GradScaler
    state: TrainState
    tracker: Tracker  # TensorBoard and/or W&B (rank 0 only)
    best_weights: dict[str, torch.Tensor] | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir

    def new_metrics(self) -> Any:
        return build_metrics(self.config.task or "", len(self.data.classes), self.ignore_index)

    @property
    def ignore_index(self) -> int | None:
        return self.config.loss.ignore_index

    def wall_seconds(self) -> float:
        """Wall time of the whole run, earlier sessions of a resumed run included."""
        return self.state.wall_seconds + time.perf_counter() - self.started


def prepare_run(config: Config) -> Run:
    """Build the run's pieces in a fixed order from one seed (the same order on every rank)."""
    check_tracking(config.tracking)
    runtime = build_runtime(config)
    seed_everything(config.seed, config.deterministic)
    data, config = build_data(config, runtime)
    monitor = check_monitor(config)
    kwargs = arch_kwargs(config, data.spec, data.classes, data.task)
    model = _build_network(config.model.arch, kwargs, runtime)
    optimizer = build_optimizer(model, config.optim)
    mode = monitor_mode(monitor)
    steps = len(data.loaders["train"])
    # Augmentation and dropout draw from here on: give each rank its own stream.
    torch.manual_seed(config.seed + runtime.dist.rank)
    return Run(
        config=config,
        runtime=runtime,
        data=data,
        model=model,
        train_model=distributed.wrap_model(model, runtime.dist, runtime.device),
        arch_kwargs=kwargs,
        loss_fn=build_loss(config.loss, data.task).to(runtime.device),
        optimizer=optimizer,
        schedule=build_schedule(optimizer, config.schedule, config.epochs, steps, mode),
        scaler=runtime.grad_scaler(),
        state=TrainState(monitor=monitor, mode=mode),
        tracker=build_tracker(config, enabled=runtime.is_main),
    )


def check_monitor(config: Config) -> str:
    """The validation metric early stopping and best-model selection watch."""
    task = config.task or "classification"
    names = METRIC_NAMES[task]
    monitor = config.monitor or names[1]
    if monitor not in names:
        raise ValueError(f"monitor {monitor!r} is not a {task} metric; choose one of {names}")
    return monitor


def _build_network(arch: str, kwargs: dict[str, Any], runtime: Runtime) -> nn.Module:
    try:
        model = build_model(arch, **kwargs)
    except TypeError as exc:
        raise ValueError(f"model.kwargs {kwargs} do not fit architecture {arch!r}: {exc}") from exc
    model = model.to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def resume_payload(run: Run) -> dict[str, Any]:
    """What `last.pt` holds: enough to continue this run exactly where it is now."""
    run.state.wall_seconds = run.wall_seconds()
    run.started = time.perf_counter()
    return {
        "model": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
        "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(),
        "scaler": run.scaler.state_dict(),
        "state": run.state.to_dict(),
        "config": config_to_dict(run.config),
        "rng": capture_rng(),
        "loader_generator": run.data.generator.get_state(),
    }


def resume_run(run: Run) -> None:
    """Continue from `<run_dir>/last.pt`: weights, optimizer, schedule, scaler, loop state,
    RNG streams, and the best weights so far (from `model.pt`)."""
    payload = load_resume(run.run_dir / "last.pt")
    for change in config_changes(payload["config"], config_to_dict(run.config)):
        if not change.startswith("resume:"):
            log.warning("resuming with a changed config: %s", change)
    run.model.load_state_dict(payload["model"])
    run.optimizer.load_state_dict(payload["optimizer"])
    run.schedule.load_state_dict(payload["schedule"])
    run.scaler.load_state_dict(payload["scaler"])
    run.state = TrainState.from_dict(payload["state"])
    run.data.generator.set_state(payload["loader_generator"])
    restore_rng(payload["rng"])
    best = run.run_dir / "model.pt"
    if best.is_file():
        run.best_weights = read_checkpoint(best)[1]
    log.info(
        "resumed %s after epoch %d (best %s %.4f)",
        run.run_dir,
        run.state.epoch,
        run.state.monitor,
        run.state.best,
    )
