"""YOLOv5 (Ultralytics v6.x/v7.0): CSP backbone (Conv, C3, SPPF), PANet neck, 3 Detect heads.

The layers follow models/yolov5s.yaml of the official repository, scaled by depth_multiple
(repeats of each C3) and width_multiple (channels, rounded up to multiples of 8). The default
arguments build YOLOv5s for the 80 COCO classes: 7,235,389 parameters, as the official repo
reports for v7.0.
"""

import math
from collections.abc import Sequence

import torch
from torch import nn

COCO_ANCHORS = (  # pixels, (w, h) pairs for strides 8, 16 and 32 (k-means on COCO)
    (10, 13, 16, 30, 33, 23),
    (30, 61, 62, 45, 59, 119),
    (116, 90, 156, 198, 373, 326),
)
STRIDES = (8, 16, 32)


class Conv(nn.Sequential):
    """Conv2d (no bias, 'same' padding) -> BatchNorm -> SiLU."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None) -> None:
        super().__init__(
            nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, bias=False),
            nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03),  # YOLOv5's BN settings
            nn.SiLU(inplace=True),
        )


class Bottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, shortcut: bool = True) -> None:
        super().__init__()
        self.cv1, self.cv2 = Conv(c1, c2, 1), Conv(c2, c2, 3)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with 3 convs: half the channels go through n bottlenecks, half around."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        c_ = c2 // 2
        self.cv1, self.cv2, self.cv3 = Conv(c1, c_), Conv(c1, c_), Conv(2 * c_, c2)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 max-pools equal SPP's 5, 9 and 13."""

    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1, self.cv2 = Conv(c1, c_), Conv(4 * c_, c2)
        self.pool = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.cv2(torch.cat((x, y1, y2, self.pool(y2)), 1))


class Detect(nn.Module):
    """A 1x1 conv per level: for each anchor, box (4), objectness (1) and class (nc) logits."""

    def __init__(
        self, nc: int, anchors: Sequence[Sequence[float]], ch: Sequence[int], image_size: int
    ) -> None:
        super().__init__()
        self.nc, self.no, self.na = nc, nc + 5, len(anchors[0]) // 2
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(3, -1, 2))
        self.register_buffer("stride", torch.tensor(STRIDES, dtype=torch.float32))
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        with torch.no_grad():  # priors (YOLOv5's _initialize_biases): few objects, even classes
            for conv, s in zip(self.m, STRIDES, strict=True):
                b = conv.bias.view(self.na, -1)
                b[:, 4] += math.log(8 / (image_size / s) ** 2)  # ~8 objects per image
                b[:, 5:] += math.log(0.6 / (nc - 0.99))

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Raw logits per level, (batch, anchors, ny, nx, 5 + nc)."""
        out = []
        for conv, x in zip(self.m, xs, strict=True):
            b, _, ny, nx = x.shape
            out.append(conv(x).view(b, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2))
        return out

    def decode(self, out: list[torch.Tensor]) -> torch.Tensor:
        """(batch, boxes, 5 + nc): cx, cy, w, h in pixels, objectness and class probabilities."""
        decoded = []
        for p, anchors, s in zip(out, self.anchors, self.stride, strict=True):
            b, na, ny, nx, no = p.shape
            y = p.float().sigmoid()
            gy, gx = torch.meshgrid(
                torch.arange(ny, device=p.device), torch.arange(nx, device=p.device), indexing="ij"
            )
            grid = torch.stack((gx, gy), -1).view(1, 1, ny, nx, 2) - 0.5
            xy = (y[..., :2] * 2 + grid) * s  # the centre may sit up to half a cell outside
            wh = (y[..., 2:4] * 2) ** 2 * anchors.view(1, na, 1, 1, 2)  # up to 4x the anchor
            decoded.append(torch.cat((xy, wh, y[..., 4:]), -1).view(b, -1, no))
        return torch.cat(decoded, 1)


class YOLOv5(nn.Module):
    def __init__(
        self,
        depth_multiple: float = 0.33,
        width_multiple: float = 0.50,
        num_classes: int = 80,
        anchors: Sequence[Sequence[float]] = COCO_ANCHORS,
        in_channels: int = 3,
        image_size: int = 640,  # only for the objectness prior of the Detect biases
    ) -> None:
        super().__init__()

        def c(channels: int) -> int:  # width, rounded up to a multiple of 8
            return math.ceil(channels * width_multiple / 8) * 8

        def n(repeats: int) -> int:
            return max(round(repeats * depth_multiple), 1)

        # backbone: P1/2 ... P5/32
        self.stem = Conv(in_channels, c(64), 6, 2, 2)
        self.p2 = nn.Sequential(Conv(c(64), c(128), 3, 2), C3(c(128), c(128), n(3)))
        self.p3 = nn.Sequential(Conv(c(128), c(256), 3, 2), C3(c(256), c(256), n(6)))
        self.p4 = nn.Sequential(Conv(c(256), c(512), 3, 2), C3(c(512), c(512), n(9)))
        self.p5 = nn.Sequential(
            Conv(c(512), c(1024), 3, 2), C3(c(1024), c(1024), n(3)), SPPF(c(1024), c(1024))
        )
        # PANet neck: top-down (upsample, concat), then bottom-up (strided conv, concat)
        self.lat5 = Conv(c(1024), c(512))
        self.td4 = C3(2 * c(512), c(512), n(3), shortcut=False)
        self.lat4 = Conv(c(512), c(256))
        self.out3 = C3(2 * c(256), c(256), n(3), shortcut=False)
        self.down3 = Conv(c(256), c(256), 3, 2)
        self.out4 = C3(2 * c(256), c(512), n(3), shortcut=False)
        self.down4 = Conv(c(512), c(512), 3, 2)
        self.out5 = C3(2 * c(512), c(1024), n(3), shortcut=False)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.detect = Detect(num_classes, anchors, (c(256), c(512), c(1024)), image_size)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p3 = self.p3(self.p2(self.stem(x)))
        p4 = self.p4(p3)
        h5 = self.lat5(self.p5(p4))
        h4 = self.lat4(self.td4(torch.cat((self.up(h5), p4), 1)))
        o3 = self.out3(torch.cat((self.up(h4), p3), 1))
        o4 = self.out4(torch.cat((self.down3(o3), h4), 1))
        o5 = self.out5(torch.cat((self.down4(o4), h5), 1))
        return self.detect([o3, o4, o5])
