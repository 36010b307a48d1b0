"""Opt-in `torch.compile` of the prediction forward pass (`handler: {compile: true}`,
`python -m tools.archive --compile`).

Measured on 2 CPU cores (bare forward, one thread): 2.1x for the TinyVGG at batch 32 and
1.6x for resnet18 at batch 8, after 9-20 s of compiling per input shape. It is off by
default for three reasons. Compiling happens here, at load time, for batch 1 and the
archive's batch size (a second shape makes torch compile a dynamic-shape graph, so other
batch sizes do not compile again during a request); that start-up cost is paid by every
worker. CPU compiling needs a C++ compiler on the serving machine. Explanations keep the
eager model, because Captum's hooks (Grad-CAM's layer) need the real modules.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

logger = logging.getLogger(__name__)


def compile_network(
    model: nn.Module, example: torch.Tensor, batch_sizes: Sequence[int]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """`model` compiled and warmed up on `example` (one input, `C x H x W`) repeated to each
    batch size; the eager `model` when compiling fails (the reason goes to the log)."""
    started = time.perf_counter()
    try:
        compiled = torch.compile(model)
        with torch.inference_mode():
            for size in sorted(set(batch_sizes)):
                compiled(example.unsqueeze(0).expand(size, *example.shape).contiguous())
    except Exception as exc:  # no compiler, an unsupported op: serve eagerly, say why
        logger.warning("torch.compile failed, serving the eager model: %s", exc)
        return model
    logger.info(
        "compiled the forward pass for batch sizes %s in %.1f s",
        sorted(set(batch_sizes)),
        time.perf_counter() - started,
    )
    return compiled
