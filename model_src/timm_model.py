"""Any timm backbone as a classifier, with pretrained weights only from a local file.

cvserve machines have no internet, so `pretrained_path` points at a weights file on disk
(a timm/`torch.save` state dict, `.pth`, `.bin` or `.safetensors`); timm's own loader reads it
through `pretrained_cfg_overlay={"file": ...}` and adapts the classifier head and the number
of input channels the same way it does for hub weights. There is no hub fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .registry import register_model


class TimmClassifier(nn.Module):
    """A thin wrapper so the timm model exposes cvserve's `default_target_layer()`."""

    def __init__(
        self,
        model_name: str,
        in_channels: int,
        num_classes: int,
        pretrained_path: str | None = None,
        **timm_kwargs: object,
    ) -> None:
        super().__init__()
        import timm  # imported lazily: only timm models pay its import time

        pretrained = pretrained_path is not None
        overlay = None
        if pretrained:
            path = Path(pretrained_path)  # type: ignore[arg-type]
            if not path.is_file():
                raise FileNotFoundError(
                    f"pretrained weights {path} not found: cvserve never downloads weights; "
                    "copy the file there or set pretrained_path to null"
                )
            overlay = {"file": str(path)}
        self.model = timm.create_model(
            model_name,
            pretrained=pretrained,
            pretrained_cfg_overlay=overlay,
            num_classes=num_classes,
            in_chans=in_channels,
            **timm_kwargs,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def default_target_layer(self) -> nn.Module:
        # timm records its stages in feature_info; the last one is the deepest spatial map.
        info = getattr(self.model, "feature_info", None)
        if info:
            return self.model.get_submodule(info[-1]["module"])
        convs = [m for m in self.model.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ValueError("this timm model has no convolution to use for Grad-CAM")
        return convs[-1]


@register_model("timm")
def timm_classifier(
    model_name: str = "resnet18",
    in_channels: int = 3,
    num_classes: int = 1000,
    pretrained_path: str | None = None,
    input_size: Sequence[int] | None = None,
    **timm_kwargs: object,
) -> TimmClassifier:
    del input_size  # timm models take any size their architecture allows
    return TimmClassifier(model_name, in_channels, num_classes, pretrained_path, **timm_kwargs)
