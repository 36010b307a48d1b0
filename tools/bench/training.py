"""Training throughput: images/s of the default configs' training step with the DataLoader
the trainer picks for this machine, next to a plain loop and a "more workers" loop.

Each variant gets a fresh run from `training.run.prepare_run` (the trainer's own model,
optimiser, schedule, augmentation and `training_step`), so the only difference between rows
is the loader: `tuned` is what `training.runtime` chooses (on CPU: no worker processes, no
pinned memory; on CUDA: workers and pinned memory), `plain` is the notebook loop
(`num_workers=0`, no pinning) and `workers=N` spends every core on loading, the setting the
CPU rule avoids. On a CPU machine `tuned` and `plain` use the same settings: their two rows
show the noise of the measurement.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from model_src import available_cores

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIGS = ("digits_tinyvgg", "scenes_unet")
"""The configs `make train` runs: the served digit_classifier and digit_segmenter."""
WARMUP_BATCHES = 5
REPEATS = 2
"""Each variant is measured this many times, interleaved, and its best kept: the first
measurement of a process pays one-time costs (allocator, thread pool) that are not the
loader's."""


@dataclasses.dataclass(frozen=True)
class LoaderVariant:
    """One DataLoader setting; None means the trainer's own choice for this machine."""

    name: str
    num_workers: int | None
    pin_memory: bool | None


def variants(cores: int) -> list[LoaderVariant]:
    return [
        LoaderVariant("tuned", None, None),
        LoaderVariant("plain", 0, False),
        LoaderVariant(f"workers={cores}", cores, None),
    ]


def measure(
    config_name: str, variant: LoaderVariant, max_batches: int, max_seconds: float
) -> dict[str, Any]:
    """Time up to `max_batches` training steps (after a short warm-up) with `variant`'s loader.

    The loader's workers start inside the timed loop, as they do every epoch in training
    (workers are not persistent: see training.loaders)."""
    from training.config import load_config
    from training.engine import training_step
    from training.run import prepare_run
    from training.runtime import worker_init_fn

    with tempfile.TemporaryDirectory(prefix="cvserve-bench-train-") as out:
        path = REPO_ROOT / "training" / "configs" / f"{config_name}.yaml"
        config = load_config(path, [f"output_dir={out}", "epochs=1", "tracking.tensorboard=false"])
        run = prepare_run(config)
        reference = run.data.loaders["train"]
        workers = run.runtime.num_workers if variant.num_workers is None else variant.num_workers
        pin = run.runtime.pin_memory if variant.pin_memory is None else variant.pin_memory
        loader = DataLoader(
            reference.dataset,
            batch_size=reference.batch_size,
            shuffle=True,
            drop_last=True,
            generator=torch.Generator().manual_seed(config.seed),
            num_workers=workers,
            pin_memory=pin,
            worker_init_fn=worker_init_fn if workers else None,
        )
        # One epoch at most: the one-cycle schedule is built for exactly one epoch of steps.
        budget = min(max_batches, len(loader) - WARMUP_BATCHES)
        run.train_model.train()
        images_seen, steps = 0, 0
        started = None
        for i, (images, targets) in enumerate(loader):
            if i == WARMUP_BATCHES:
                started = time.perf_counter()
            images, targets = run.runtime.to_device(images), targets.to(run.runtime.device)
            training_step(run, images, targets)  # returns a float: the step has finished
            if started is not None:
                images_seen += images.shape[0]
                steps += 1
                if steps >= budget or time.perf_counter() - started > max_seconds:
                    break
        seconds = time.perf_counter() - started if started is not None else float("nan")
        run.tracker.close()
    return {
        "config": config_name,
        "loader": variant.name,
        "num_workers": workers,
        "pin_memory": pin,
        "batch_size": reference.batch_size,
        "device": str(run.runtime.device),
        "amp": str(run.runtime.amp_dtype).removeprefix("torch.") if run.runtime.amp_dtype else None,
        "steps": steps,
        "images": images_seen,
        "seconds": round(seconds, 3),
        "images_per_s": round(images_seen / seconds, 1) if seconds > 0 else float("nan"),
    }


def measure_all(
    configs: Sequence[str] = DEFAULT_CONFIGS, *, max_batches: int = 60, max_seconds: float = 30.0
) -> list[dict[str, Any]]:
    """Every default config with every loader variant, in one process and one run (best of
    `REPEATS` interleaved measurements per variant)."""
    cores = available_cores()
    rows = []
    for name in configs:
        best: dict[str, dict[str, Any]] = {}
        for _ in range(REPEATS):
            for variant in variants(cores):
                row = measure(name, variant, max_batches, max_seconds)
                kept = best.get(variant.name)
                if kept is None or row["images_per_s"] > kept["images_per_s"]:
                    best[variant.name] = row
        rows += [{**row, "repeats": REPEATS} for row in best.values()]
    return rows
