"""ResNet with bottleneck blocks (He et al. 2015), v1.5, in paddle.nn: the stride sits on the 3x3.

The PyTorch twin's model (model_images/resnet50/model.py) layer for layer, initialised the same
way. The default arguments build ResNet-50: 25,557,032 trainable parameters, as torchvision's
and the twin's. paddle keeps BatchNorm's running mean and variance as parameters too, with
trainable=False (torch keeps them as buffers): count the trainable ones to compare.
"""

import math
from collections.abc import Sequence

import paddle
from paddle import ParamAttr, nn
from paddle.nn import initializer


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2D:
    """A bias-free conv, He-initialised over its fan-out as torch's kaiming_normal_(fan_out)."""
    he = initializer.KaimingNormal(nonlinearity="relu", mode="fan_out")
    return nn.Conv2D(
        in_ch, out_ch, kernel, stride, padding=kernel // 2, weight_attr=ParamAttr(initializer=he),
        bias_attr=False,
    )  # fmt: skip


class Bottleneck(nn.Layer):
    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = conv(in_ch, width, 1)
        self.bn1 = nn.BatchNorm2D(width)
        self.conv2 = conv(width, width, 3, stride)
        self.bn2 = nn.BatchNorm2D(width)
        self.conv3 = conv(width, out_ch, 1)
        # each block starts as the identity (Goyal et al. 2017)
        self.bn3 = nn.BatchNorm2D(
            out_ch, weight_attr=ParamAttr(initializer=initializer.Constant(0))
        )
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(conv(in_ch, out_ch, 1, stride), nn.BatchNorm2D(out_ch))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        out = nn.functional.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return nn.functional.relu(out + identity)


class ResNet(nn.Layer):
    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 3),
        width: int = 64,
        in_channels: int = 3,
        num_classes: int = 1000,
        small_stem: bool = False,
    ) -> None:
        super().__init__()
        if small_stem:  # tiny images: keep the resolution, no 4x reduction up front
            self.stem = nn.Sequential(conv(in_channels, width, 3), nn.BatchNorm2D(width), nn.ReLU())
        else:
            self.stem = nn.Sequential(
                conv(in_channels, width, 7, 2),
                nn.BatchNorm2D(width),
                nn.ReLU(),
                nn.MaxPool2D(3, 2, padding=1),
            )
        stages, in_ch = [], width
        for i, n_blocks in enumerate(layers):
            stage_width = width * 2**i
            for j in range(n_blocks):
                stride = 2 if i > 0 and j == 0 else 1
                stages.append(Bottleneck(in_ch, stage_width, stride))
                in_ch = stage_width * Bottleneck.expansion
        self.stages = nn.Sequential(*stages)
        # torch's nn.Linear default, U(+-1/sqrt(fan_in)) for weight and bias; paddle's is Xavier
        bound = initializer.Uniform(-1 / math.sqrt(in_ch), 1 / math.sqrt(in_ch))
        self.fc = nn.Linear(
            in_ch, num_classes, ParamAttr(initializer=bound), ParamAttr(initializer=bound)
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(paddle.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
