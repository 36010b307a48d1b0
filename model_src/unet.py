"""U-Net for semantic segmentation (Ronneberger et al. 2015, Pytorch-UNet's layout).

Any input size works: the input is padded (reflect) up to a multiple of 2**depth and the
logits are cropped back, so the output is always `N x num_classes x H x W` at the input's
own size. `num_classes=1` is a binary model (one logit, sigmoid downstream).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import DoubleConv
from .registry import register_model


class Down(nn.Sequential):
    """Max-pool then DoubleConv: halves the resolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))


class Up(nn.Module):
    """Upsample, concatenate the skip connection, DoubleConv."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, bilinear: bool):
        super().__init__()
        if bilinear:
            self.up: nn.Module = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            up_channels = in_channels
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            up_channels = in_channels // 2
        self.conv = DoubleConv(up_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """Encoder of `depth` downsamplings, widths `base_width * 2**i`, and a mirrored decoder."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        depth: int = 3,
        base_width: int = 16,
        bilinear: bool = True,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"unet depth must be >= 1, got {depth}")
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.inc = DoubleConv(in_channels, widths[0])
        self.downs = nn.ModuleList(Down(widths[i], widths[i + 1]) for i in range(depth))
        self.ups = nn.ModuleList(
            Up(widths[i + 1], widths[i], widths[i], bilinear) for i in reversed(range(depth))
        )
        self.outc = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        multiple = 2**self.depth
        pad_h, pad_w = (-h) % multiple, (-w) % multiple
        if pad_h or pad_w:
            mode = "reflect" if min(h, w) > max(pad_h, pad_w) else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        return self.outc(y)[..., :h, :w]

    @property
    def input_multiple(self) -> int:
        """Heights and widths that are multiples of this need no padding: the forward has no
        shape-dependent branch for them, so `tools.export` exports the U-Net with dynamic
        spatial axes (multiples of this) and other sizes run eagerly."""
        return 2**self.depth

    def default_target_layer(self) -> nn.Module:
        return self.ups[-1]


@register_model("unet")
def unet(
    in_channels: int = 1,
    num_classes: int = 2,
    depth: int = 3,
    base_width: int = 16,
    bilinear: bool = True,
    input_size: Sequence[int] | None = None,
) -> UNet:
    del input_size  # fully convolutional with padding: any size works
    return UNet(in_channels, num_classes, depth, base_width, bilinear)
