"""torchvision's LR-ASPP and DeepLabV3 (MobileNetV3-Large backbone) as cvserve segmenters.

torchvision's segmentation models return a dict (`{"out": logits, "aux": ...}`). cvserve
wraps them so the built module returns the logits tensor itself: training, evaluation,
Grad-CAM, serving and ONNX export then see the same `N x C x H x W` contract as the U-Net,
with no model-specific branch anywhere. The dict key unwrapped is an `arch_kwargs` entry
(`output_key`, default `"out"`), so the card records the output convention and the ONE
place that applies it is `TorchvisionSegmenter.forward`.

Random init by default: cvserve machines have no internet, so `pretrained_path` points at a
local state dict (a torchvision segmentation model's, or an ImageNet `mobilenet_v3_large`
whose `features.*` keys map onto the backbone); tensors whose shapes do not fit (the class
head, a first conv with another channel count) are skipped and logged. No hub fallback.

`bn_momentum`: torchvision builds MobileNetV3 with BatchNorm momentum 0.01, tuned for long
ImageNet runs. In a short run from scratch the running statistics then lag far behind the
weights, and the model in eval mode predicts background everywhere while its training Dice
rises (seen in the architecture study: 250 steps, validation Dice 0 throughout). cvserve's
configs set PyTorch's default 0.1; None keeps torchvision's value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from .registry import register_model

log = logging.getLogger(__name__)


def _builders() -> dict[str, Callable[..., nn.Module]]:
    from torchvision.models import segmentation  # lazily: only these models pay for it

    return {
        "lraspp": segmentation.lraspp_mobilenet_v3_large,
        "deeplabv3": lambda **kw: segmentation.deeplabv3_mobilenet_v3_large(aux_loss=False, **kw),
    }


class TorchvisionSegmenter(nn.Module):
    """A torchvision segmentation model whose forward returns `output[output_key]`."""

    def __init__(
        self,
        family: str,
        in_channels: int,
        num_classes: int,
        output_key: str = "out",
        pretrained_path: str | None = None,
        bn_momentum: float | None = None,
    ) -> None:
        super().__init__()
        self.model = _builders()[family](
            weights=None, weights_backbone=None, num_classes=num_classes
        )
        self.output_key = output_key
        if in_channels != 3:
            stem = self.model.backbone["0"]
            old = stem[0]
            stem[0] = nn.Conv2d(
                in_channels,
                old.out_channels,
                old.kernel_size,
                old.stride,
                old.padding,
                bias=False,
            )
        if bn_momentum is not None:
            for module in self.model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.momentum = bn_momentum
        if pretrained_path is not None:
            self._load_local(Path(pretrained_path))

    def _load_local(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained weights {path} not found: cvserve never downloads weights; "
                "copy the file there or set pretrained_path to null"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {
            ("backbone." + k[len("features.") :] if k.startswith("features.") else k): v
            for k, v in state.items()
        }
        own = self.model.state_dict()
        fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        skipped = sorted(set(state) - set(fits))
        self.model.load_state_dict(fits, strict=False)
        log.info("loaded %d tensors from %s; skipped %d", len(fits), path, len(skipped))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[self.output_key]

    def default_target_layer(self) -> nn.Module:
        backbone = self.model.backbone
        return backbone[list(backbone.keys())[-1]]


def _register(family: str) -> None:
    @register_model(family)
    def build(
        in_channels: int = 3,
        num_classes: int = 21,
        output_key: str = "out",
        pretrained_path: str | None = None,
        bn_momentum: float | None = None,
        input_size: Sequence[int] | None = None,
    ) -> TorchvisionSegmenter:
        del input_size  # fully convolutional; outputs are upsampled to the input size
        return TorchvisionSegmenter(
            family, in_channels, num_classes, output_key, pretrained_path, bn_momentum
        )

    build.__doc__ = f"torchvision {family}_mobilenet_v3_large, returning the `output_key` tensor."


for _family in ("lraspp", "deeplabv3"):
    _register(_family)
