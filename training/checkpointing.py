"""The two files a run keeps: `model.pt` (best weights + model card) and `last.pt` (resume).

`model.pt` goes through `model_src.save_checkpoint`, the one checkpoint format. `last.pt`
holds what continuing needs (model, optimizer, scheduler, grad scaler, loop state, RNG
states, config) as plain tensors, numbers, lists and dicts, so it too loads with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from model_src import InputSpec, ModelCard

from .config import Config, config_to_dict

log = logging.getLogger(__name__)

RESUME_FORMAT = "cvserve-resume/1"


def arch_kwargs(config: Config, spec: InputSpec, classes: list[str], task: str) -> dict[str, Any]:
    """`model.kwargs` completed with what the data decides: channels, classes, input size.

    A segmenter may ask for `num_classes: 1` with two classes (binary, one logit).
    """
    kwargs = dict(config.model.kwargs)
    kwargs.setdefault("in_channels", spec.channels)
    kwargs.setdefault("num_classes", len(classes))
    kwargs.setdefault("input_size", list(spec.size))
    if kwargs["in_channels"] != spec.channels:
        raise ValueError(
            f"model.kwargs.in_channels={kwargs['in_channels']} but the input has "
            f"{spec.channels} channel(s); remove it (it is filled in) or set input.channels"
        )
    binary = task == "segmentation" and kwargs["num_classes"] == 1 and len(classes) == 2
    if kwargs["num_classes"] != len(classes) and not binary:
        raise ValueError(
            f"model.kwargs.num_classes={kwargs['num_classes']} but the dataset has "
            f"{len(classes)} classes; remove it (it is filled in), or use 1 for a binary segmenter"
        )
    return kwargs


def build_card(
    config: Config,
    spec: InputSpec,
    classes: list[str],
    kwargs: dict[str, Any],
    metrics: dict[str, Any],
    dataset: dict[str, Any],
) -> ModelCard:
    """The model card of this run's best model."""
    assert config.task is not None, "the config must be resolved (task known) before saving"
    return ModelCard(
        name=config.name,
        version=config.version,
        task=config.task,
        arch=config.model.arch,
        arch_kwargs=kwargs,
        classes=classes,
        input=spec,
        metrics=metrics,
        dataset=dataset,
        config=config_to_dict(config),
    )


def save_resume(path: Path, payload: dict[str, Any]) -> Path:
    """Write `last.pt` atomically (an interrupted write never replaces a good file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": RESUME_FORMAT, **payload}, tmp)
    tmp.replace(path)
    return path


def load_resume(path: Path) -> dict[str, Any]:
    """Read `last.pt` with `weights_only=True`.

    Raises:
        FileNotFoundError: no `last.pt` yet (nothing to resume; drop `resume=true`).
        ValueError: the file is not a cvserve resume state.
    """
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: {path} does not exist; train without resume=true")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != RESUME_FORMAT:
        raise ValueError(f"{path} is not a cvserve resume state ({RESUME_FORMAT})")
    return payload


def config_changes(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts (logged on resume)."""
    changes = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        path = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            changes += config_changes(a, b, path + ".")
        elif a != b:
            changes.append(f"{path}: {a!r} -> {b!r}")
    return changes
