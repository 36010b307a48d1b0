"""Where and how a run executes: device, seeds and determinism, AMP, DataLoader workers.

CUDA-only features (AMP, channels_last, pinned memory) switch themselves off on CPU, so one
config runs on a laptop and on a GPU box. RNG states are captured as plain tensors and lists
so a resume checkpoint still loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from model_src import available_cores

from .config import Config
from .distributed import DistInfo, init_from_env

log = logging.getLogger(__name__)

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Runtime:
    """The resolved execution settings of a run."""

    device: torch.device
    dist: DistInfo
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    num_workers: int = 0

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    @property
    def pin_memory(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision on CUDA when configured; otherwise nothing."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling is needed for fp16 only (bf16 has fp32's exponent range)."""
        enabled = self.amp_dtype == torch.float16
        return torch.amp.GradScaler(self.device.type, enabled=enabled)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=self.pin_memory)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def build_runtime(config: Config) -> Runtime:
    """Pick the device, join a DDP group if torchrun started us, resolve AMP and workers."""
    device = select_device(config.device)
    info = init_from_env(device.type)
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)
    cuda = device.type == "cuda"
    if not cuda and (config.amp != "none" or config.channels_last):
        log.info("amp=%s / channels_last ignored: they only help on CUDA", config.amp)
    workers = config.data.num_workers
    return Runtime(
        device=device,
        dist=info,
        amp_dtype=AMP_DTYPES.get(config.amp) if cuda else None,
        channels_last=config.channels_last and cuda,
        num_workers=default_num_workers(device, info) if workers is None else workers,
    )


def select_device(name: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; an explicit CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for but CUDA is not available; use device=auto")
    return device


def default_num_workers(device: torch.device, info: DistInfo) -> int:
    """DataLoader workers for this machine.

    On CPU the main process already uses every core for the model, and decoding a small
    image costs microseconds, so extra processes only compete for the same cores (measured on
    2 cores: 0 workers was fastest for 28x28 digits and 64x64 scenes). With a GPU the CPU is
    otherwise idle: use the cores this process's share allows, up to 8.
    """
    share = max(1, available_cores() // info.world_size)
    if device.type != "cuda" or share <= 2:
        return 0
    return min(8, share - 1)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; ask for deterministic kernels (warn where none exist)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic


def worker_init_fn(worker_id: int) -> None:
    """Seed NumPy and Python in a DataLoader worker from torch's per-worker seed.

    torch seeds each worker from the loader's generator; without this, NumPy and `random`
    would start identical in every worker (and repeat each epoch with forked workers).
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def capture_rng() -> dict[str, Any]:
    """Every global RNG state as weights_only-loadable data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Undo `capture_rng` (a resumed run continues the interrupted random streams)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
