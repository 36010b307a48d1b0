"""From a config's `data` and `input` sections to three DataLoaders and the model's InputSpec.

The dataset says what it is (`Splits`: classes, task, channels, native size, mean/std); the
config may override the input spec. The spec resolved here is the one written into the model
card, so training evaluation and the handlers preprocess identically.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from model_src import InputSpec

from . import distributed
from .config import Config, InputConfig
from .data import Splits, build_splits
from .runtime import Runtime, worker_init_fn
from .transforms import TransformedDataset, build_augment, pair_transform

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class DataBundle:
    """Everything the loop needs from the data side."""

    splits: Splits
    spec: InputSpec
    task: str
    loaders: dict[str, DataLoader]
    generator: torch.Generator  # the train loader's shuffling RNG (saved for resume)

    @property
    def classes(self) -> list[str]:
        return list(self.splits.classes)

    def sizes(self) -> dict[str, int]:
        return {name: len(loader.dataset) for name, loader in self.loaders.items()}  # type: ignore[arg-type]


def load_splits(config: Config) -> Splits:
    """Build the dataset's splits (with `data.limit` applied) and check the task matches.

    The split comes from `data.seed`, not the training `seed`: runs that differ only in their
    training seed are scored on the same test items.
    """
    data = config.data
    splits = build_splits(
        data.name, root=data.root, download=data.download, seed=data.seed, **data.options
    )
    if config.task is not None and config.task != splits.task:
        raise ValueError(
            f"task {config.task!r} does not match dataset {data.name!r} ({splits.task}); "
            "remove `task` from the config or pick a matching dataset"
        )
    if data.limit is not None:
        for name in SPLIT_NAMES:
            setattr(splits, name, limit_dataset(getattr(splits, name), data.limit))
    return splits


def limit_dataset(dataset: Dataset, limit: int) -> Dataset:
    """At most `limit` items, evenly spaced (so label-sorted data keeps every class)."""
    n = len(dataset)  # type: ignore[arg-type]
    if n <= limit:
        return dataset
    step = n / limit
    return Subset(dataset, [int(i * step) for i in range(limit)])


def resolve_input_spec(cfg: InputConfig, splits: Splits) -> InputSpec:
    """The config's input section with the dataset's defaults for whatever it leaves out."""
    size = cfg.size or splits.size
    if size is None:
        raise ValueError("this dataset's images differ in size: set input.size: [height, width]")
    channels = cfg.channels or splits.channels
    mean, std = cfg.mean, cfg.std
    if mean is None:
        if channels != splits.channels:
            raise ValueError(
                f"input.channels={channels} differs from the dataset's {splits.channels}: "
                "set input.mean and input.std for the converted images"
            )
        mean, std = list(splits.mean), list(splits.std)
    objects = cfg.object_size or splits.object_size
    return InputSpec(
        size=tuple(size),
        channels=channels,
        mean=mean,
        std=std,
        resize=cfg.resize,
        object_size=tuple(objects) if objects else None,
    )


def resolved_config(config: Config, splits: Splits, spec: InputSpec) -> Config:
    """The config with the dataset-derived values written in (what the run really used)."""
    spec_dict = spec.to_dict()
    resolved_input = InputConfig(**spec_dict)
    loss = config.loss
    if loss.ignore_index is None and splits.ignore_index is not None:
        loss = dataclasses.replace(loss, ignore_index=splits.ignore_index)
    return dataclasses.replace(config, task=splits.task, input=resolved_input, loss=loss)


def build_data(config: Config, runtime: Runtime) -> tuple[DataBundle, Config]:
    """Splits, input spec and DataLoaders; also returns the resolved config."""
    splits = load_splits(config)
    spec = resolve_input_spec(config.input, splits)
    config = resolved_config(config, splits, spec)
    augment = build_augment(config.augment, splits.task)
    generator = torch.Generator().manual_seed(config.seed)
    datasets = {
        "train": TransformedDataset(splits.train, pair_transform(splits.task, spec, augment)),
        "val": TransformedDataset(splits.val, pair_transform(splits.task, spec)),
        "test": TransformedDataset(splits.test, pair_transform(splits.task, spec)),
    }
    loaders = {
        "train": _train_loader(datasets["train"], config, runtime, generator),
        "val": _eval_loader(datasets["val"], config, runtime),
        "test": _eval_loader(datasets["test"], config, runtime),
    }
    return DataBundle(splits, spec, splits.task, loaders, generator), config


def _train_loader(
    dataset: Dataset, config: Config, runtime: Runtime, generator: torch.Generator
) -> DataLoader:
    sampler = distributed.train_sampler(dataset, runtime.dist, config.seed)
    per_rank = math.ceil(len(dataset) / runtime.dist.world_size)  # type: ignore[arg-type]
    batch = min(config.data.batch_size, per_rank)
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=sampler is None,
        sampler=sampler,
        # A last batch of 1 breaks BatchNorm in training mode; dropping it loses < 1 batch.
        drop_last=per_rank > batch,
        generator=generator,
        **_loader_options(runtime),
    )


def _eval_loader(dataset: Dataset, config: Config, runtime: Runtime) -> DataLoader:
    batch = config.data.eval_batch_size or 2 * config.data.batch_size
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=False,
        sampler=distributed.eval_sampler(dataset, runtime.dist),
        # Its own generator: without one, every pass would draw a worker seed from the global
        # RNG and evaluating more or less often would change the training run.
        generator=torch.Generator().manual_seed(config.seed),
        **_loader_options(runtime),
    )


def _loader_options(runtime: Runtime) -> dict[str, object]:
    workers = runtime.num_workers
    return {
        "num_workers": workers,
        "pin_memory": runtime.pin_memory,
        "worker_init_fn": worker_init_fn if workers else None,
        # Not persistent: each epoch's workers are seeded from the (saved) loader generator,
        # which is what makes a resumed run repeat the uninterrupted one.
        "persistent_workers": False,
    }
