"""3D U-Net (Çiçek et al. 2016) as MLPerf Training's KiTS19 reference builds it (nnU-Net style).

Every block is two 3x3x3 conv + instance norm + ReLU; the encoder halves the resolution with a
strided conv, the decoder doubles it with a 2x2x2 transposed conv and concatenates the skip.
The default arguments build the reference model exactly (31,190,243 parameters).
"""

import itertools
from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.01)}


def conv_block(in_ch: int, out_ch: int, activation: str, stride: int = 1) -> nn.Sequential:
    """3x3x3 conv (no bias: the norm's shift replaces it), instance norm, activation."""
    return nn.Sequential(
        nn.Conv3d(in_ch, out_ch, 3, stride, padding=1, bias=False),
        nn.InstanceNorm3d(out_ch, affine=True),
        ACTIVATIONS[activation](),
    )


class Down(nn.Module):
    """The encoder's block; stride 2 on its first conv halves the resolution (none at the input)."""

    def __init__(self, in_ch: int, out_ch: int, activation: str, stride: int = 2) -> None:
        super().__init__()
        self.conv1 = conv_block(in_ch, out_ch, activation, stride)
        self.conv2 = conv_block(out_ch, out_ch, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class Up(nn.Module):
    """The decoder's block: upsample 2x, concatenate the encoder's skip, two convs."""

    def __init__(self, in_ch: int, out_ch: int, activation: str) -> None:
        super().__init__()
        self.upsample = nn.ConvTranspose3d(in_ch, out_ch, 2, stride=2)
        self.conv1 = conv_block(2 * out_ch, out_ch, activation)
        self.conv2 = conv_block(out_ch, out_ch, activation)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat((self.upsample(x), skip), dim=1)
        return self.conv2(self.conv1(x))


class UNet3D(nn.Module):
    """filters: each resolution level's width, the input's first; the bottleneck (one more
    halving) repeats the last width. Input sides must be divisible by 2 ** len(filters)."""

    def __init__(
        self,
        filters: Sequence[int] = (32, 64, 128, 256, 320),
        in_channels: int = 1,
        num_classes: int = 3,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        widths = [*filters, filters[-1]]
        self.encoder = nn.ModuleList([Down(in_channels, widths[0], activation, stride=1)])
        self.encoder.extend(Down(i, o, activation) for i, o in itertools.pairwise(widths))
        self.decoder = nn.ModuleList(
            Up(i, o, activation) for i, o in itertools.pairwise(widths[::-1])
        )
        self.output = nn.Conv3d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck's own output is no skip
        for block in self.decoder:
            x = block(x, skips.pop())
        return self.output(x)
