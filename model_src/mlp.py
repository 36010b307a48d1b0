"""Fully connected classifiers: `mlp` and the residual `skip_mlp`.

Both flatten an image of `in_channels x input_size`. They keep an identity layer on the
un-flattened input so Grad-CAM has a spatial layer to attribute to (for a network without
convolutions, Grad-CAM at the input is gradient x input summed over channels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .blocks import ResidualLinearBlock
from .registry import register_model


def _in_features(in_channels: int, input_size: Sequence[int]) -> int:
    if len(input_size) != 2:
        raise ValueError(f"input_size must be (height, width), got {tuple(input_size)}")
    return in_channels * int(input_size[0]) * int(input_size[1])


class MLP(nn.Module):
    """Linear -> ReLU -> Dropout for each hidden width, then a linear classifier."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        input_size: Sequence[int],
        hidden_sizes: Sequence[int] = (256, 128),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_layer = nn.Identity()
        layers: list[nn.Module] = [nn.Flatten()]
        width = _in_features(in_channels, input_size)
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.input_layer(x))

    def default_target_layer(self) -> nn.Module:
        return self.input_layer


class SkipMLP(nn.Module):
    """Residual blocks of two linear layers each, with a bridge where widths change."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        input_size: Sequence[int],
        hidden_sizes: Sequence[int] = (256, 256, 128),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_layer = nn.Identity()
        self.flatten = nn.Flatten()
        blocks: list[nn.Module] = []
        width = _in_features(in_channels, input_size)
        for hidden in hidden_sizes:
            blocks.append(ResidualLinearBlock(width, hidden, dropout))
            width = hidden
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.flatten(self.input_layer(x))))

    def default_target_layer(self) -> nn.Module:
        return self.input_layer


@register_model("mlp")
def mlp(
    in_channels: int = 1,
    num_classes: int = 10,
    input_size: Sequence[int] = (28, 28),
    hidden_sizes: Sequence[int] = (256, 128),
    dropout: float = 0.0,
) -> MLP:
    return MLP(in_channels, num_classes, input_size, hidden_sizes, dropout)


@register_model("skip_mlp")
def skip_mlp(
    in_channels: int = 1,
    num_classes: int = 10,
    input_size: Sequence[int] = (28, 28),
    hidden_sizes: Sequence[int] = (256, 256, 128),
    dropout: float = 0.0,
) -> SkipMLP:
    return SkipMLP(in_channels, num_classes, input_size, hidden_sizes, dropout)
