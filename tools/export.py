"""Archive-time export of a checkpoint's model to ONNX, checked against the eager model.

`tools.archive --backend onnxruntime|openvino` calls `export_for_backend`, which writes
`model.onnx` and `export.json` into the folder whose files travel in the archive next to
`model.pt`. Export:

- `torch.onnx.export(dynamo=True)` (torch's supported exporter) with a dynamic batch axis.
  Spatial axes: fixed at the card's input size, except for models that declare an
  `input_multiple` (the U-Net), exported for any height and width that are multiples of
  it (a segmenter's tiles); other shapes run on the eager model in the handler.
- Parity, on the backend the archive will serve with (`handlers.backends`, the serving
  code itself): a seeded batch of 3 random inputs, the normalised black image (batch 1, so
  two batch sizes) and, for dynamic sizes, one input of another accepted size. Every output
  must satisfy `|backend - eager| <= LOGIT_ATOL + LOGIT_RTOL * |eager|` (logits for
  classifiers and segmenters alike), and the top-1 class (a classifier's label, every
  pixel of a segmenter's mask) must be equal wherever eager's margin between its two best
  classes is above `2 * LOGIT_ATOL` (below that, a tie within the tolerance could go
  either way). A failed export or parity check raises `ExportError` with the reason, which
  stops the archive.

`export.json` records the exporter, the accepted input shapes, the tolerances and the
measured parity, so an archive says how its export was checked.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from handlers.backends import (
    EXPORT_INFO_FILE,
    EXPORTED_BACKENDS,
    ONNX_FILE,
    RUNNERS,
    ExportedForward,
    ShapeRule,
)
from model_src import ModelCard

log = logging.getLogger("tools.export")

LOGIT_ATOL = 1e-3
LOGIT_RTOL = 1e-3
PARITY_SEED = 0
MAX_BATCH = 4096
OPSET = 18


class ExportError(RuntimeError):
    """An export that failed or does not match the eager model (the message says why)."""


@dataclass(frozen=True)
class Parity:
    """The parity check's result over all its inputs."""

    inputs: int
    shapes: list[list[int]]
    max_abs_diff: float
    worst_excess: float  # max of |diff| - (atol + rtol * |eager|); <= 0 passes
    top1_checked: int  # outputs (images or pixels) whose eager margin decides the top-1
    top1_mismatches: int

    @property
    def ok(self) -> bool:
        return self.worst_excess <= 0 and self.top1_mismatches == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "shapes": self.shapes,
            "max_abs_diff": self.max_abs_diff,
            "top1_checked": self.top1_checked,
            "top1_mismatches": self.top1_mismatches,
            "atol": LOGIT_ATOL,
            "rtol": LOGIT_RTOL,
        }


def shape_rule(model: nn.Module, card: ModelCard) -> ShapeRule:
    """The shapes to export for: the card's size, or any multiple for models that allow it."""
    multiple = getattr(model, "input_multiple", None)
    if card.task == "segmentation" and isinstance(multiple, int) and multiple >= 1:
        return ShapeRule(card.input.channels, None, multiple)
    return ShapeRule(card.input.channels, card.input.size)


def example_size(rule: ShapeRule, card: ModelCard) -> tuple[int, int]:
    """The card's size, rounded up to the rule's multiple when the size is dynamic."""
    if rule.size is not None:
        return rule.size
    m = rule.multiple
    return (-(-card.input.height // m) * m, -(-card.input.width // m) * m)


def export_onnx(model: nn.Module, card: ModelCard, path: Path, rule: ShapeRule) -> None:
    """Write `model` as ONNX to `path` (dynamic batch; dynamic spatial axes when `rule`
    says so). Raises ExportError with the exporter's own message on failure."""
    from torch.export import Dim

    height, width = example_size(rule, card)
    example = torch.zeros(2, rule.channels, height, width)
    axes: dict[int, Any] = {0: Dim("batch", min=1, max=MAX_BATCH)}
    if rule.size is None:
        axes[2] = rule.multiple * Dim("h", min=1, max=MAX_BATCH)
        axes[3] = rule.multiple * Dim("w", min=1, max=MAX_BATCH)
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=True,
                input_names=["input"],
                output_names=["output"],
                dynamic_shapes=(axes,),  # by position: the forward's one input
                opset_version=OPSET,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:
        raise ExportError(
            f"ONNX export of {card.name} ({card.arch}) failed: {type(exc).__name__}: "
            f"{_first_lines(str(exc))}"
        ) from exc
    if not path.is_file():
        raise ExportError(f"ONNX export of {card.name} ({card.arch}) wrote no file")


def _first_lines(text: str, lines: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[:lines])


def parity_inputs(rule: ShapeRule, card: ModelCard) -> list[torch.Tensor]:
    """Seeded inputs in the model's normalised space (see the module docstring)."""
    generator = torch.Generator().manual_seed(PARITY_SEED)
    height, width = example_size(rule, card)
    channels = rule.channels
    mean = torch.tensor(card.input.mean).view(1, channels, 1, 1)
    std = torch.tensor(card.input.std).view(1, channels, 1, 1)
    inputs = [
        torch.randn(3, channels, height, width, generator=generator),
        ((torch.zeros(1, channels, height, width) - mean) / std),
    ]
    if rule.size is None:
        m = rule.multiple
        inputs.append(torch.randn(1, channels, height + m, width + 2 * m, generator=generator))
    return inputs


def compare(eager: torch.Tensor, other: torch.Tensor) -> tuple[float, float, int, int]:
    """(max |diff|, worst excess over the tolerance, top-1 outputs checked, mismatches) for
    one batch of logits (`N x C` or `N x C x H x W`; C == 1 is a binary model, top-1 = sign)."""
    if eager.shape != other.shape:
        raise ExportError(f"output shape {tuple(other.shape)} != eager {tuple(eager.shape)}")
    diff = (other - eager).abs()
    excess = float((diff - (LOGIT_ATOL + LOGIT_RTOL * eager.abs())).max())
    if eager.shape[1] == 1:
        margin = eager[:, 0].abs() * 2
        top_eager, top_other = eager[:, 0] > 0, other[:, 0] > 0
    else:
        best2 = eager.topk(2, dim=1).values
        margin = best2[:, 0] - best2[:, 1]
        top_eager, top_other = eager.argmax(dim=1), other.argmax(dim=1)
    decided = margin > 2 * LOGIT_ATOL
    mismatches = int((top_eager != top_other)[decided].sum())
    return float(diff.max()), excess, int(decided.sum()), mismatches


def check_parity(forward: ExportedForward, model: nn.Module, inputs: list[torch.Tensor]) -> Parity:
    """Run every input through the exported forward and the eager model and compare."""
    max_diff, worst, checked, mismatches = 0.0, float("-inf"), 0, 0
    with torch.inference_mode():
        for batch in inputs:
            if not forward.rule.accepts(batch.shape):
                raise ExportError(f"parity input {tuple(batch.shape)} is not an exported shape")
            d, e, c, m = compare(model(batch).float(), forward(batch).float())
            max_diff, worst = max(max_diff, d), max(worst, e)
            checked, mismatches = checked + c, mismatches + m
    if forward.eager_fallbacks:
        raise ExportError("the parity check ran on the eager model, not the export")
    return Parity(
        len(inputs), [list(b.shape) for b in inputs], max_diff, worst, checked, mismatches
    )


def export_for_backend(
    model: nn.Module, card: ModelCard, backend: str, dest: Path, threads: int | None = None
) -> dict[str, Any]:
    """Export `model` (eval, CPU) into `dest/model.onnx`, check it on `backend`, write
    `dest/export.json`; returns what export.json holds. Raises ExportError on failure."""
    if backend not in EXPORTED_BACKENDS:
        raise ValueError(f"{backend!r} is not an exported backend ({', '.join(EXPORTED_BACKENDS)})")
    model = model.cpu().eval()
    rule = shape_rule(model, card)
    path = dest / ONNX_FILE
    started = time.perf_counter()
    export_onnx(model, card, path, rule)
    exported_s = time.perf_counter() - started
    threads = threads or torch.get_num_threads()
    try:
        run, provider = RUNNERS[backend](path, threads, torch.device("cpu"))
    except Exception as exc:
        raise ExportError(
            f"{backend} cannot load the exported {card.name} ({card.arch}): "
            f"{type(exc).__name__}: {_first_lines(str(exc))}"
        ) from exc
    forward = ExportedForward(backend, run, provider, rule, model)
    try:
        parity = check_parity(forward, model, parity_inputs(rule, card))
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(
            f"{backend} failed to run the exported {card.name} ({card.arch}): "
            f"{type(exc).__name__}: {_first_lines(str(exc))}"
        ) from exc
    if not parity.ok:
        raise ExportError(
            f"the {backend} export of {card.name} ({card.arch}) does not match the eager model: "
            f"max |diff| {parity.max_abs_diff:.3g} (tolerance {LOGIT_ATOL} + {LOGIT_RTOL} x "
            f"|eager|, exceeded by {max(parity.worst_excess, 0):.3g}), top-1 differs for "
            f"{parity.top1_mismatches} of {parity.top1_checked} decided outputs"
        )
    info = {
        "backend": backend,
        "file": ONNX_FILE,
        "exporter": f"torch.onnx.export(dynamo=True) torch {torch.__version__}, opset {OPSET}",
        "runtime": f"{backend} {_version(backend)}",
        "input": rule.to_dict(),
        "parity": parity.to_dict(),
        "export_seconds": round(exported_s, 1),
    }
    (dest / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log.info("exported %s for %s: max |diff| %.2g", card.name, backend, parity.max_abs_diff)
    return info


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def exporter_versions() -> str:
    """What the export's result depends on besides the checkpoint (for archive fingerprints)."""
    return " ".join(
        f"{d}={_version(d)}" for d in ("torch", "onnx", "onnxscript", *EXPORTED_BACKENDS)
    )
