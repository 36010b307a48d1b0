"""DistributedDataParallel plumbing: the same `fit()` runs alone or under `torchrun`.

`torchrun --nproc-per-node N -m training.train <config>` sets RANK / WORLD_SIZE /
LOCAL_RANK / MASTER_ADDR / MASTER_PORT; `init_from_env()` reads them and joins the process
group (NCCL on CUDA, gloo on CPU). Without them everything here is a no-op, so single-process
code needs no branches. Only rank 0 writes files (`is_main()`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler, Sampler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job; `world_size == 1` when not distributed."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """What torchrun's environment variables say (a single process without them)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistInfo(
        rank=int(os.environ.get("RANK", "0")),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group torchrun describes; NCCL for CUDA, gloo for CPU."""
    info = env_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
        log.info("rank %d/%d joined the %s process group", info.rank, info.world_size, backend)
    return info


def shutdown() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """True on rank 0 or when not distributed: the process that writes files and logs."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `model` when distributed, else `model` itself."""
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def broadcast_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running stats) to every rank.

    DDP broadcasts buffers at the START of each forward, so after the last training step each
    rank holds stats updated by its own last batch; evaluation and the saved checkpoint must
    all use rank 0's.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


def train_sampler(dataset: Dataset, info: DistInfo, seed: int) -> Sampler | None:
    """A shuffling DistributedSampler (call `set_epoch`), or None to let the loader shuffle."""
    if not info.enabled:
        return None
    return DistributedSampler(
        dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed
    )


class ShardSampler(Sampler[int]):
    """Every `world_size`-th index starting at `rank`, in order, without padding.

    DistributedSampler pads the last shard by repeating items, which would count some
    evaluation items twice; here the shards are disjoint and cover the split exactly, so
    all-reduced metrics equal a single process's.
    """

    def __init__(self, length: int, info: DistInfo) -> None:
        self.indices = range(info.rank, length, info.world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def eval_sampler(dataset: Dataset, info: DistInfo) -> Sampler | None:
    return ShardSampler(len(dataset), info) if info.enabled else None  # type: ignore[arg-type]
