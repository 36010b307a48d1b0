"""Captum explanations for one classified image: which pixels are evidence for a class.

Three methods (docs/api.md, Explanations):
- `integrated_gradients`: path integral of gradients from a baseline to the input. The baseline
  is the NORMALISED BLACK IMAGE (the eval transform of an all-zero image), not a zero tensor:
  a zero tensor is mid-gray after normalisation and would credit the black background. With
  this baseline a pixel that equals the baseline gets exactly zero attribution.
- `saliency`: absolute input gradient (cheap, noisy).
- `gradcam`: Grad-CAM on the model's own `default_target_layer()`, ReLU'd and upsampled
  bilinearly to the model input size.

All produce a signed map on the model canvas (`H x W`); the handler maps it back to the
original image with `model_src.restore_to_original` and renders it with `summarize`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency
from torch import nn

from handlers.contract import DEFAULT_METHOD, DEFAULT_STEPS, EXPLANATION_METHODS
from model_src import default_target_layer


@dataclass(frozen=True)
class Attribution:
    """A signed evidence map on the model canvas and, for integrated gradients, the gap
    between the attributions' sum and the change in the target's logit (lower is better)."""

    heat: torch.Tensor  # H x W, float, on the model's device
    convergence_delta: float | None = None


def attribute(
    model: nn.Module,
    inputs: torch.Tensor,
    target: int,
    method: str = DEFAULT_METHOD,
    *,
    baseline: torch.Tensor | None = None,
    n_steps: int = DEFAULT_STEPS,
    internal_batch_size: int | None = 32,
) -> Attribution:
    """Attribute the logit of class `target` for one input.

    Args:
        model: the classifier in eval mode (its parameters may be frozen).
        inputs: the normalised input, `1 x C x H x W`, on the model's device.
        target: the class index to explain.
        method: one of `EXPLANATION_METHODS` (handlers.contract).
        baseline: integrated gradients only: `1 x C x H x W`, the normalised black image.
        n_steps: integrated gradients only: steps of the path integral.
        internal_batch_size: integrated gradients only: steps evaluated per forward pass,
            which bounds memory for large inputs.

    Raises:
        ValueError: an unknown method, or integrated gradients without a baseline.
    """
    if method not in EXPLANATION_METHODS:
        raise ValueError(
            f"unknown explanation method {method!r}; choose one of {EXPLANATION_METHODS}"
        )
    x = inputs.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        if method == "integrated_gradients":
            if baseline is None:
                raise ValueError("integrated gradients needs the normalised black baseline")
            attributions, delta = IntegratedGradients(model).attribute(
                x,
                baselines=baseline.to(x.device, x.dtype),
                target=target,
                n_steps=n_steps,
                internal_batch_size=internal_batch_size,
                return_convergence_delta=True,
            )
            return Attribution(attributions[0].sum(0).detach(), float(delta.abs().max()))
        if method == "saliency":
            grads = Saliency(model).attribute(x, target=target, abs=True)
            return Attribution(grads[0].sum(0).detach())
        cam = LayerGradCam(model, default_target_layer(model)).attribute(
            x, target=target, relu_attributions=True
        )
        cam = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
        return Attribution(cam[0].sum(0).detach())


def summarize(heat: torch.Tensor) -> tuple[np.ndarray, float]:
    """A signed `H x W` map -> (positive evidence scaled to [0, 1], positive fraction).

    The positive part is divided by its maximum, so 1.0 is the strongest evidence FOR the
    target in this image (maps are relative, not comparable across images). The positive
    fraction is the share of the total absolute attribution that is positive: how much of the
    map supports the target rather than speaks against it (always 1 for saliency).
    """
    heat = heat.detach().float().cpu()
    positive = heat.clamp(min=0)
    total = float(heat.abs().sum())
    fraction = float(positive.sum()) / total if total > 0 else 0.0
    top = float(positive.max()) if positive.numel() else 0.0
    scaled = (positive / top).numpy() if top > 0 else np.zeros(tuple(heat.shape), np.float32)
    return scaled.astype(np.float32), fraction
