"""The checkpoint format: one `model.pt` holding a `state_dict` and its model card.

The card is plain JSON-able data (str, int, float, bool, None, lists, dicts), so the whole
file loads with `torch.load(weights_only=True)`: no pickled code runs when a checkpoint is
opened, in training, in the archiver or in a TorchServe worker. Everything downstream (the
archive's name and version, the handler's preprocessing, class names, the Grad-CAM layer)
comes from the card; nothing keeps a second copy.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .preprocessing import InputSpec
from .registry import build_model

FORMAT = "cvserve-checkpoint/1"
TASKS = ("classification", "segmentation")


class CheckpointError(ValueError):
    """A file that is not a readable cvserve checkpoint."""


@dataclass
class ModelCard:
    """Everything needed to rebuild, preprocess for, label and describe a trained model.

    `arch_kwargs` are passed verbatim to `build_model(arch, **arch_kwargs)`. For a
    segmentation model, `classes[0]` is the background; a binary model has two classes and a
    single output logit (`arch_kwargs["num_classes"] == 1`).
    """

    name: str
    task: str
    arch: str
    arch_kwargs: dict[str, Any]
    classes: list[str]
    input: InputSpec
    version: str = "1.0"
    metrics: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    )

    def __post_init__(self) -> None:
        if isinstance(self.input, dict):
            self.input = InputSpec.from_dict(self.input)
        self.classes = [str(c) for c in self.classes]
        self.version = str(self.version)
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if not self.name or not all(c.isalnum() or c in "_-" for c in self.name):
            raise ValueError(
                f"model name {self.name!r} must be non-empty letters, digits, '_' or '-' "
                "(it becomes the TorchServe model name and the archive file name)"
            )
        if not self.version or "/" in self.version or " " in self.version:
            raise ValueError(f"version {self.version!r} must be non-empty, no spaces or '/'")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be at least two unique names, got {self.classes}")

    @property
    def num_outputs(self) -> int:
        """Output channels of the network: 1 for a binary segmenter, else len(classes)."""
        return int(self.arch_kwargs.get("num_classes", len(self.classes)))

    @property
    def is_binary(self) -> bool:
        return self.task == "segmentation" and self.num_outputs == 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input"] = self.input.to_dict()
        # Round-trip through JSON: tuples become lists, and anything not JSON-able fails here
        # (at save time) instead of making the file unloadable with weights_only=True.
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise CheckpointError(f"model card has unknown keys {sorted(unknown)}")
        return cls(**d)


def save_checkpoint(path: str | Path, model: nn.Module, card: ModelCard) -> Path:
    """Write `model.pt`: the CPU state dict and the card. Returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = getattr(model, "module", model)  # unwrap DistributedDataParallel
    module = getattr(module, "_orig_mod", module)  # unwrap torch.compile
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, "card": card.to_dict(), "state_dict": state}, tmp)
    tmp.replace(path)  # atomic: a crash never leaves a half-written model.pt
    return path


def read_checkpoint(path: str | Path) -> tuple[ModelCard, dict[str, torch.Tensor]]:
    """Read the card and state dict without building the model (`weights_only=True`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    # Any unreadable file (pickled code, truncation, another format) gets the same message.
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a cvserve checkpoint (torch.load with weights_only=True failed: "
            f"{type(exc).__name__}); write checkpoints with model_src.save_checkpoint"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a cvserve checkpoint (no {FORMAT!r} format marker); "
            "write checkpoints with model_src.save_checkpoint"
        )
    return ModelCard.from_dict(payload["card"]), payload["state_dict"]


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelCard]:
    """Rebuild the model from its card, load the weights, move to `device`, set eval mode."""
    card, state = read_checkpoint(path)
    kwargs = dict(card.arch_kwargs)
    if "pretrained_path" in kwargs:
        kwargs["pretrained_path"] = None  # the state dict already holds the trained weights
    model = build_model(card.arch, **kwargs)
    model.load_state_dict(state)
    return model.to(device).eval(), card
