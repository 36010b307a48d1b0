"""Tiny, quickly trained checkpoints for the integration tests (seconds on 2 CPU cores).

A few hundred optimiser steps on the bundled data are enough for predictions that mean
something (the classifier gets most digits right, the segmenter finds the digits in a scene),
while the tests stay fast. The cards are the real default models' cards in miniature: same
names, tasks, classes and input specs, so the archives and the server see what `make train`
would produce.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from model_src import InputSpec, ModelCard, build_eval_transform, build_model, save_checkpoint
from training.data import build_splits


class _Transformed(Dataset):
    """RAW (image, target) items -> tensors with the model's own eval transform."""

    def __init__(self, base: Dataset, spec: InputSpec, segmentation: bool) -> None:
        self.base, self.transform, self.segmentation = (
            base,
            build_eval_transform(spec),
            segmentation,
        )

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, target = self.base[i]
        x = self.transform(image)
        if self.segmentation:
            y = torch.as_tensor(list(target.getdata()), dtype=torch.long).view(
                target.height, target.width
            )
            return x, y
        return x, torch.tensor(int(target))


def _fit(
    model: torch.nn.Module, loader: DataLoader, steps: int, lr: float, weight: torch.Tensor | None
) -> float:
    """Plain Adam + cross-entropy for `steps` steps, on ONE thread.

    Tiny models on a shared 2-core machine run ~20x faster single-threaded (two threads
    fight each other and every other process for the cores).
    """
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model.train()
    step, loss = 0, 0.0
    try:
        while step < steps:
            for x, y in loader:
                batch_loss = F.cross_entropy(model(x), y, weight=weight)
                optimiser.zero_grad()
                batch_loss.backward()
                optimiser.step()
                loss, step = float(batch_loss.detach()), step + 1
                if step >= steps:
                    break
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return loss


def _train_and_save(
    path: Path,
    *,
    name: str,
    task: str,
    arch: str,
    arch_kwargs: dict,
    splits: object,
    spec: InputSpec,
    batch_size: int,
    steps: int,
    lr: float,
    seed: int,
    version: str,
    weight: torch.Tensor | None = None,
) -> ModelCard:
    """Fit `arch` for `steps` on `splits.train` and write a checkpoint with a full card."""
    model = build_model(arch, **arch_kwargs)
    loader = DataLoader(
        _Transformed(splits.train, spec, segmentation=task == "segmentation"),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    started = time.perf_counter()
    loss = _fit(model, loader, steps, lr=lr, weight=weight)
    card = ModelCard(
        name=name,
        task=task,
        arch=arch,
        arch_kwargs=arch_kwargs,
        classes=list(splits.classes),
        input=spec,
        version=version,
        metrics={"train_loss": round(loss, 4), "steps": steps},
        dataset={"name": splits.info.get("name", ""), "seed": seed},
        config={"purpose": "integration tests", "seconds": round(time.perf_counter() - started)},
    )
    save_checkpoint(path, model, card)
    return card


def train_classifier(
    path: Path, *, version: str = "1.0", steps: int = 150, seed: int = 0
) -> ModelCard:
    """TinyVGG on MNIST-5k digits, 28x28 grayscale, classes "0".."9"."""
    torch.manual_seed(seed)
    splits = build_splits("digits", seed=seed)
    return _train_and_save(
        path,
        name="digit_classifier",
        task="classification",
        arch="tinyvgg",
        arch_kwargs={
            "in_channels": 1,
            "num_classes": 10,
            "input_size": [28, 28],
            "hidden_units": 8,
        },
        splits=splits,
        spec=InputSpec(size=(28, 28), channels=1, mean=splits.mean, std=splits.std),
        batch_size=32,
        steps=steps,
        lr=3e-3,
        seed=seed,
        version=version,
    )


def train_segmenter(
    path: Path, *, version: str = "1.0", steps: int = 120, seed: int = 0
) -> ModelCard:
    """A small U-Net on 64x64 digit scenes, classes "background", "0".."9"."""
    torch.manual_seed(seed)
    splits = build_splits("digit_scenes", seed=seed, n_train=512, n_val=16, n_test=16)
    return _train_and_save(
        path,
        name="digit_segmenter",
        task="segmentation",
        arch="unet",
        arch_kwargs={"in_channels": 1, "num_classes": 11, "depth": 2, "base_width": 8},
        splits=splits,
        spec=InputSpec(size=(64, 64), channels=1, mean=splits.mean, std=splits.std),
        batch_size=16,
        steps=steps,
        lr=1e-2,
        seed=seed,
        version=version,
        # Background is ~90% of the pixels: weigh digits up so a short run learns to find them.
        weight=torch.tensor([0.2] + [1.0] * 10),
    )


def scene_with_digits(seed: int = 0, index: int = 0) -> tuple[object, list[str]]:
    """A generated test scene (PIL image) and its digits' labels, left to right."""
    splits = build_splits("digit_scenes", seed=seed, n_train=8, n_val=8, n_test=8)
    scene = splits.test.scene(index)
    digits = sorted(scene.digits, key=lambda d: d.bbox[0])
    return scene.image, [str(d.label) for d in digits]
