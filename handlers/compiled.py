"""`torch.compile` of the prediction forward (`handler: {compile: true}`; `tools.archive`
turns it on for models above 2M parameters on CPU, `--compile/--no-compile` overrides).

Measured on 2 CPU cores: served on one TorchServe, resnet18 55 against 42.5 req/s eager and
a 256-px U-Net 8.5 against 5.8 at 32 concurrent; nothing for the tiny digit classifier,
whose requests are bound by the frontend. The costs are why it is not on everywhere:
compiling happens here, at load time, for batch 1 and the archive's batch size (a second
shape makes torch compile a dynamic-shape graph, so other batch sizes do not compile again
during a request), tens of seconds that every worker pays at start-up; CPU compiling needs a
C++ compiler on the serving machine (without one the eager model is served); and it has not
been measured on GPU. Explanations keep the eager model, because Captum's hooks (Grad-CAM's
layer) need the real modules.
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
