"""The training loop: `train_one_epoch()`, `evaluate()`, and `fit()`, which reads as its steps.

`fit(config)` prepares the run (seeded), resumes it when asked, alternates one training epoch
with one validation pass (schedule, best model, early stopping, progress files), then tests
the best weights and writes the run folder `<output_dir>/<name>/<version>/`:

    model.pt     best weights by the monitored validation metric, with the model card
    last.pt      resume state after the latest epoch
    config.yaml  the resolved config (dataset defaults filled in)
    metrics.csv  one row per epoch;  curves.png  loss and metric, train and validation
    report.json  test metrics, per-class metrics, confusion matrix, timings, device, config
    tensorboard/ event files: scalars, learning rate, validation predictions, config
    wandb/       the W&B run, with tracking.wandb=true (see training.tracking)

Under torchrun the same code runs on every rank; only rank 0 writes.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import os
import platform
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from model_src import ModelCard, save_checkpoint

from . import distributed
from .checkpointing import build_card, save_resume
from .config import Config, config_to_dict, save_config
from .metrics import headline_metric
from .previews import predict_previews, preview_indices
from .reporting import plot_curves, write_json, write_metrics_csv
from .run import Run, prepare_run, resume_payload, resume_run
from .runtime import Runtime

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What `fit` returns: where it wrote, the card's metrics, the report, the best model."""

    run_dir: Path
    metrics: dict[str, Any]
    report: dict[str, Any]
    model: nn.Module
    card: ModelCard


def fit(config: Config) -> FitResult:
    """Train `config`'s experiment end to end (see the module docstring for the outputs)."""
    joined_here = not (dist.is_available() and dist.is_initialized())
    run = prepare_run(config)
    try:
        if run.config.resume:
            resume_run(run)
        start_run(run)
        while keep_training(run):
            run_epoch(run)
        return finish(run)
    finally:
        run.tracker.close()
        if joined_here:
            distributed.shutdown()


def start_run(run: Run) -> None:
    """Write the resolved config next to the outputs, hand it to the trackers, and log what
    is about to happen."""
    if run.runtime.is_main:
        save_config(run.config, run.run_dir / "config.yaml")
        run.tracker.start(run.config, run.data.classes, dataset_facts(run))
    log_start(run)


def keep_training(run: Run) -> bool:
    """Epochs left and early stopping not triggered."""
    state = run.state
    return state.epoch < run.config.epochs and not state.should_stop(run.config.patience)


def run_epoch(run: Run) -> None:
    """One epoch: train, validate, step the schedule, keep the best, save progress."""
    epoch = run.state.epoch
    sampler = run.data.loaders["train"].sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)  # DistributedSampler: a new shuffle every epoch
    started = time.perf_counter()
    train_scores = train_one_epoch(run)
    distributed.broadcast_buffers(run.model)
    val = evaluate(run.model, run.data.loaders["val"], run.loss_fn, run.runtime, run.new_metrics())
    val_scores = val.summary()
    run.schedule.after_epoch(val_scores[run.state.monitor])
    row = epoch_row(run, train_scores, val_scores, time.perf_counter() - started)
    if run.state.end_epoch(row, val_scores[run.state.monitor]):
        keep_best(run, val_scores)
    save_progress(run, row)


def epoch_bar(loader: Iterable[T], desc: str, main: bool, stream: TextIO | None = None) -> tqdm:
    """A tqdm bar over one epoch's loader, drawn only where someone watches: the main
    process, on an interactive terminal (tqdm's `disable=None` stays quiet when the stream is
    not a TTY: logs, pipes, pytest), and not in CI. The epoch's log line is always written."""
    quiet = not main or bool(os.environ.get("CI"))
    return tqdm(
        loader, desc=desc, unit="batch", file=stream, dynamic_ncols=True,
        disable=True if quiet else None,
    )  # fmt: skip


def train_one_epoch(run: Run) -> dict[str, float]:
    """One pass over the training loader; returns the epoch's (all-reduced) train metrics."""
    run.train_model.train()
    metrics = run.new_metrics()
    loader = run.data.loaders["train"]
    bar = epoch_bar(loader, f"epoch {run.state.epoch + 1}/{run.config.epochs}", run.runtime.is_main)
    started, images_seen = time.perf_counter(), 0
    for images, targets in bar:
        images, targets = run.runtime.to_device(images), targets.to(run.runtime.device)
        logits, loss = training_step(run, images, targets)
        metrics.update(logits, targets, loss)
        images_seen += images.shape[0]
        bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
    metrics.all_reduce()
    run.state.train_seconds += time.perf_counter() - started
    run.state.train_images += images_seen * run.runtime.dist.world_size
    return metrics.summary()


def training_step(
    run: Run, images: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """Forward (autocast on CUDA), backward (scaled for fp16), clip, step; returns logits."""
    with run.runtime.autocast():
        logits = run.train_model(images)
        loss = run.loss_fn(logits, targets)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if run.config.grad_clip is not None:
        run.scaler.unscale_(run.optimizer)  # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(run.model.parameters(), run.config.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.schedule.after_batch()
    return logits.detach(), float(loss.detach())


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    loss_fn: nn.Module,
    runtime: Runtime,
    metrics: Any,
) -> Any:
    """Run `model` over `loader` in eval mode; returns `metrics`, all-reduced across ranks.

    Takes the plain module (not the DDP wrapper): ranks may see different numbers of
    batches, and DDP's forward would wait for the others.
    """
    model.eval()
    for images, targets in loader:
        images, targets = runtime.to_device(images), targets.to(runtime.device)
        with runtime.autocast():
            logits = model(images)
            loss = loss_fn(logits, targets)
        metrics.update(logits.float(), targets, float(loss))
    metrics.all_reduce()
    return metrics


def epoch_row(
    run: Run, train: dict[str, float], val: dict[str, float], seconds: float
) -> dict[str, Any]:
    """The epoch's line in metrics.csv."""
    row: dict[str, Any] = {"epoch": run.state.epoch + 1, "lr": run.optimizer.param_groups[0]["lr"]}
    row.update({f"train_{k}": v for k, v in train.items()})
    row.update({f"val_{k}": v for k, v in val.items()})
    row["time_s"] = round(seconds, 3)
    return row


def keep_best(run: Run, val_scores: dict[str, float]) -> None:
    """Remember the new best weights (every rank, for the final test) and save model.pt."""
    run.best_weights = copy.deepcopy({k: v.detach() for k, v in run.model.state_dict().items()})
    if run.runtime.is_main:
        metrics = {"val": val_scores, "best_epoch": run.state.best_epoch}
        save_checkpoint(run.run_dir / "model.pt", run.model, card_for(run, metrics))


def card_for(run: Run, metrics: dict[str, Any]) -> ModelCard:
    info = dataset_facts(run)
    return build_card(run.config, run.data.spec, run.data.classes, run.arch_kwargs, metrics, info)


def save_progress(run: Run, row: dict[str, Any]) -> None:
    """Log the epoch; rank 0 rewrites metrics.csv and last.pt and tells the trackers."""
    log_epoch(run, row)
    if not run.runtime.is_main:
        return
    write_metrics_csv(run.state.history, run.run_dir / "metrics.csv")
    save_resume(run.run_dir / "last.pt", resume_payload(run))
    run.tracker.log_epoch(row)
    track_predictions(run, row["epoch"])


def track_predictions(run: Run, epoch: int) -> None:
    """A few fixed validation items with the model's predictions, for the trackers."""
    count = run.config.tracking.images
    if not count or not run.tracker.wants_images:
        return
    dataset = run.data.loaders["val"].dataset
    previews = predict_previews(
        run.model,
        dataset,
        preview_indices(dataset, count),
        run.data.spec,
        run.data.classes,
        run.data.task,
        run.runtime.device,
    )
    run.tracker.log_predictions(epoch, previews, run.data.classes)


def dataset_facts(run: Run) -> dict[str, Any]:
    return {**run.data.splits.info, "sizes": run.data.sizes()}


def finish(run: Run) -> FitResult:
    """Test the best weights; rank 0 writes the final model.pt, report.json and curves.png."""
    if run.best_weights is not None:
        run.model.load_state_dict(run.best_weights)
    distributed.broadcast_buffers(run.model)
    test = evaluate(
        run.model, run.data.loaders["test"], run.loss_fn, run.runtime, run.new_metrics()
    )
    metrics = {
        "val": best_val_scores(run),
        "test": test.summary(),
        "best_epoch": run.state.best_epoch,
        "epochs": run.state.epoch,
    }
    card = card_for(run, metrics)
    report = build_report(run, metrics, test.details(run.data.classes))
    if run.runtime.is_main:
        save_checkpoint(run.run_dir / "model.pt", run.model, card)
        write_json(report, run.run_dir / "report.json")
        plot_curves(
            run.state.history,
            headline_metric(run.state.monitor, run.data.task),
            run.run_dir / "curves.png",
        )
        run.tracker.log_test(metrics["test"], run.state.epoch)
        log.info("test %s -> %s", format_scores(metrics["test"]), run.run_dir)
    distributed.barrier()
    return FitResult(run.run_dir, metrics, report, run.model, card)


def best_val_scores(run: Run) -> dict[str, float]:
    """The validation scores of the best epoch, from the history (one source of truth)."""
    for row in run.state.history:
        if row["epoch"] == run.state.best_epoch:
            return {k[4:]: v for k, v in row.items() if k.startswith("val_")}
    return {}


def build_report(run: Run, metrics: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
    """report.json: final test metrics, per-class metrics, timings, device and config."""
    state = run.state
    wall = run.wall_seconds()
    return {
        "name": run.config.name,
        "version": run.config.version,
        "task": run.config.task,
        "arch": run.config.model.arch,
        "monitor": state.monitor,
        **metrics,
        **details,
        "stopped_early": state.epoch < run.config.epochs,
        "wall_time_s": round(wall, 2),
        "train_time_s": round(state.train_seconds, 2),
        "train_images_per_s": round(state.train_images / max(state.train_seconds, 1e-9), 1),
        "device": describe_device(run.runtime),
        "dataset": dataset_facts(run),
        "config": config_to_dict(run.config),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def describe_device(runtime: Runtime) -> dict[str, Any]:
    device = runtime.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "type": device.type,
        "name": name or platform.machine(),
        "cpu_count": os.cpu_count(),
        "world_size": runtime.dist.world_size,
        "torch_threads": torch.get_num_threads(),
        "num_workers": runtime.num_workers,
        "amp": str(runtime.amp_dtype).replace("torch.", "") if runtime.amp_dtype else "none",
        "torch": torch.__version__,
    }


def log_start(run: Run) -> None:
    if not run.runtime.is_main:
        return
    sizes = run.data.sizes()
    log.info(
        "%s %s: %s on %s (%s), %d parameters; train/val/test %d/%d/%d; %d worker(s)",
        run.config.name,
        run.config.version,
        run.config.model.arch,
        run.runtime.device,
        f"{run.runtime.dist.world_size} process(es)",
        sum(p.numel() for p in run.model.parameters()),
        sizes["train"],
        sizes["val"],
        sizes["test"],
        run.runtime.num_workers,
    )


def log_epoch(run: Run, row: dict[str, Any]) -> None:
    if not run.runtime.is_main:
        return
    train = {k[6:]: v for k, v in row.items() if k.startswith("train_")}
    val = {k[4:]: v for k, v in row.items() if k.startswith("val_")}
    best = " *" if run.state.best_epoch == row["epoch"] else ""
    log.info(
        "epoch %d/%d train %s | val %s | lr %.2e | %.1fs%s",
        row["epoch"],
        run.config.epochs,
        format_scores(train),
        format_scores(val),
        row["lr"],
        row["time_s"],
        best,
    )


def format_scores(scores: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in scores.items())
