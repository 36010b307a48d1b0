"""Convolutional classifiers: the configurable `convnet` and CNN Explainer's `tinyvgg`.

Both end in global or flattened features and a linear classifier. Their last convolutional
block is the default Grad-CAM layer: the deepest layer that still has a spatial map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .registry import register_model


class ConvNet(nn.Module):
    """Layers of conv -> batch norm -> ReLU -> dropout -> max-pool, then a linear head.

    The head sits on a global average pool, so any input size works.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: Sequence[int] = (32, 64, 128),
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dropout: float = 0.0,
        pool: bool = True,
    ) -> None:
        super().__init__()
        if not channels:
            raise ValueError("convnet needs at least one entry in `channels`")
        pad = kernel_size // 2 if padding is None else padding
        layers: list[nn.Module] = []
        width = in_channels
        for out in channels:
            layers.append(
                nn.Sequential(
                    nn.Conv2d(width, out, kernel_size, stride, pad, bias=False),
                    nn.BatchNorm2d(out),
                    nn.ReLU(),
                    nn.Dropout2d(dropout),
                    nn.MaxPool2d(2, ceil_mode=True) if pool else nn.Identity(),
                )
            )
            width = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def default_target_layer(self) -> nn.Module:
        return self.features[-1]


class TinyVGG(nn.Module):
    """CNN Explainer's TinyVGG: two (conv-ReLU-conv-ReLU-maxpool) blocks and a linear layer."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        input_size: Sequence[int] = (28, 28),
        hidden_units: int = 10,
    ) -> None:
        super().__init__()

        def block(cin: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, hidden_units, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(hidden_units, hidden_units, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )

        self.block1 = block(in_channels)
        self.block2 = block(hidden_units)
        h, w = (int(s) // 4 for s in input_size)
        if h < 1 or w < 1:
            raise ValueError(f"tinyvgg needs an input of at least 4x4, got {tuple(input_size)}")
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(hidden_units * h * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.block2(self.block1(x)))

    def default_target_layer(self) -> nn.Module:
        # The last ReLU before pooling: full 1/2-resolution map, after the non-linearity.
        return self.block2[3]


@register_model("convnet")
def convnet(
    in_channels: int = 1,
    num_classes: int = 10,
    channels: Sequence[int] = (32, 64, 128),
    kernel_size: int = 3,
    stride: int = 1,
    padding: int | None = None,
    dropout: float = 0.0,
    pool: bool = True,
    input_size: Sequence[int] | None = None,
) -> ConvNet:
    del input_size  # global pooling: any size works
    return ConvNet(in_channels, num_classes, channels, kernel_size, stride, padding, dropout, pool)


@register_model("tinyvgg")
def tinyvgg(
    in_channels: int = 1,
    num_classes: int = 10,
    input_size: Sequence[int] = (28, 28),
    hidden_units: int = 10,
) -> TinyVGG:
    return TinyVGG(in_channels, num_classes, input_size, hidden_units)
