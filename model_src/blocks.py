"""Reusable layers shared by the architecture files.

ReLUs are never in-place: Captum's Grad-CAM hooks the output of a layer, and an in-place
activation right after it overwrites the tensor the hook saved.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBNAct(nn.Sequential):
    """conv -> batch norm -> ReLU, the unit of ConvNet and the U-Net."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
    ) -> None:
        if padding is None:
            padding = kernel_size // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )


class DoubleConv(nn.Sequential):
    """Two ConvBNAct layers: the U-Net's encoder and decoder block."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        mid = mid_channels or out_channels
        super().__init__(ConvBNAct(in_channels, mid), ConvBNAct(mid, out_channels))


class ResidualLinearBlock(nn.Module):
    """Two linear layers with a ReLU between them and a skip connection around them.

    When the input and output widths differ, the skip goes through a linear "bridge" so the
    sum is defined (the residual-MLP exercise's projection shortcut).
    """

    def __init__(self, in_features: int, out_features: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, out_features)
        self.fc2 = nn.Linear(out_features, out_features)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.bridge: nn.Module = (
            nn.Identity() if in_features == out_features else nn.Linear(in_features, out_features)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc2(self.dropout(self.act(self.fc1(x))))
        return self.act(out + self.bridge(x))
