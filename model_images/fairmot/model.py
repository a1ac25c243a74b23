"""FairMOT (Zhang et al. 2021): one-shot detection and re-ID on a DLA-34 backbone with DLA-up.

The network is CenterNet's DLA-34 (Yu et al. 2018) with iterative and hierarchical deep
aggregation up to stride 4, and four heads on the 64-channel stride-4 map: object-centre
heatmap, box size (left, top, right, bottom: FairMOT's later `ltrb` default), centre offset,
and a re-ID embedding. Training adds the ID classifier over the training identities and the
uncertainty weights of the detection and ID losses, which is why they live here too.

Differences from the official `pose_dla_dcn.py`: a plain 3x3 conv (with bias) replaces each
deformable conv (DCNv2) of the up-path, since plain torch has none; the ImageNet classifier
(`base.fc`) that the official backbone carries but never uses is left out; and so is the 1x1
`project` of the two-level trees (level3, level4), whose output the official forward discards.
With the defaults: 19,156,919 parameters in the network, plus 1,864,697 for the ID classifier
over 14,455 identities and the two loss weights (README.md compares them with the official).
"""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Targets = Sequence[torch.Tensor]  # heatmap, ind, mask, wh, offset, ids (see data.py)


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        residual = x if residual is None else residual
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + residual)


class Root(nn.Module):
    """Aggregation node: a 1x1 conv over the concatenated children."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, *children: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(torch.cat(children, 1))))


class Tree(nn.Module):
    """Hierarchical deep aggregation: a binary tree of blocks whose leaves meet in Roots."""

    def __init__(
        self,
        levels: int,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        level_root: bool = False,
        root_dim: int = 0,
    ) -> None:
        super().__init__()
        root_dim = (root_dim or 2 * out_ch) + (in_ch if level_root else 0)
        self.levels, self.level_root = levels, level_root
        self.downsample = nn.MaxPool2d(stride, stride) if stride > 1 else nn.Identity()
        self.project = None  # the leaf's residual when the width changes
        if levels == 1:
            self.tree1 = BasicBlock(in_ch, out_ch, stride)
            self.tree2 = BasicBlock(out_ch, out_ch)
            self.root = Root(root_dim, out_ch)
            if in_ch != out_ch:
                self.project = nn.Sequential(
                    nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)
                )
        else:
            self.tree1 = Tree(levels - 1, in_ch, out_ch, stride)
            self.tree2 = Tree(levels - 1, out_ch, out_ch, root_dim=root_dim + out_ch)

    def forward(self, x: torch.Tensor, children: list[torch.Tensor] | None = None) -> torch.Tensor:
        children = [] if children is None else children
        bottom = self.downsample(x)
        if self.level_root:
            children.append(bottom)
        if self.levels == 1:
            residual = bottom if self.project is None else self.project(bottom)
            x1 = self.tree1(x, residual)
            return self.root(self.tree2(x1), x1, *children)
        x1 = self.tree1(x)
        return self.tree2(x1, children=[*children, x1])


def conv_level(in_ch: int, out_ch: int, convs: int, stride: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(convs):
        layers += [
            nn.Conv2d(in_ch, out_ch, 3, stride, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        ]
        in_ch, stride = out_ch, 1
    return nn.Sequential(*layers)


class DLA(nn.Module):
    """The DLA backbone: six levels at strides 1, 2, 4, 8, 16, 32; returns every level."""

    def __init__(self, levels: Sequence[int], channels: Sequence[int], in_channels: int) -> None:
        super().__init__()
        self.base_layer = nn.Sequential(
            nn.Conv2d(in_channels, channels[0], 7, 1, padding=3, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        )
        self.level0 = conv_level(channels[0], channels[0], levels[0])
        self.level1 = conv_level(channels[0], channels[1], levels[1], stride=2)
        self.trees = nn.ModuleList(
            Tree(levels[i], channels[i - 1], channels[i], 2, level_root=i > 2) for i in range(2, 6)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.level0(self.base_layer(x))
        out = [x, self.level1(x)]
        for tree in self.trees:
            out.append(tree(out[-1]))
        return out


class ConvBNReLU(nn.Sequential):
    """The official DeformConv (DCNv2 3x3 + BN + ReLU), with a plain 3x3 conv instead."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU())


def bilinear_up(ch: int, factor: int) -> nn.ConvTranspose2d:
    """A depthwise transposed conv that starts as bilinear upsampling (then is trained)."""
    up = nn.ConvTranspose2d(ch, ch, 2 * factor, factor, factor // 2, groups=ch, bias=False)
    k = 2 * factor
    center = (2 * factor - 1 - factor % 2) / (2 * factor)
    ramp = 1 - (torch.arange(k) / factor - center).abs()
    with torch.no_grad():
        up.weight.copy_((ramp[:, None] * ramp[None, :]).expand_as(up.weight))
    return up


class IDAUp(nn.Module):
    """Iterative deep aggregation: each coarser map is projected to out_ch, upsampled to the
    previous one's resolution, added to it and merged by a node conv."""

    def __init__(self, out_ch: int, channels: Sequence[int], factors: Sequence[int]) -> None:
        super().__init__()
        self.proj = nn.ModuleList(ConvBNReLU(c, out_ch) for c in channels[1:])
        self.up = nn.ModuleList(bilinear_up(out_ch, int(f)) for f in factors[1:])
        self.node = nn.ModuleList(ConvBNReLU(out_ch, out_ch) for _ in channels[1:])

    def forward(self, layers: list[torch.Tensor], start: int) -> None:
        """Aggregate layers[start:] in place: layers[i] becomes the merge of start..i."""
        for k, i in enumerate(range(start + 1, len(layers))):
            layers[i] = self.node[k](self.up[k](self.proj[k](layers[i])) + layers[i - 1])


class DLAUp(nn.Module):
    """Deep layer aggregation upwards: IDA-up from the deepest pair out to the shallowest."""

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        in_ch, scales = list(channels), [2**i for i in range(len(channels))]
        self.idas = nn.ModuleList()
        for j in range(len(channels) - 2, -1, -1):
            self.idas.append(IDAUp(channels[j], in_ch[j:], [s // scales[j] for s in scales[j:]]))
            in_ch[j + 1 :] = [channels[j]] * (len(channels) - j - 1)
            scales[j + 1 :] = [scales[j]] * (len(channels) - j - 1)

    def forward(self, layers: list[torch.Tensor]) -> list[torch.Tensor]:
        layers, out = list(layers), [layers[-1]]
        for k, ida in enumerate(self.idas):
            ida(layers, len(layers) - k - 2)
            out.insert(0, layers[-1])
        return out


def head(in_ch: int, hidden: int, out_ch: int, bias: float = 0.0) -> nn.Sequential:
    layers = nn.Sequential(
        nn.Conv2d(in_ch, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, out_ch, 1)
    )
    nn.init.constant_(layers[0].bias, 0)
    nn.init.constant_(layers[2].bias, bias)
    return layers


class FairMOT(nn.Module):
    """Detection and re-ID heads at stride 4 over DLA + DLA-up (+ IDA-up over levels 2..4).

    model(images) returns the heads' raw maps: {"hm", "wh", "reg", "id"}.
    model(images, targets) returns the training losses: {"loss", "hm", "wh", "reg", "id"}.
    """

    def __init__(
        self,
        levels: Sequence[int] = (1, 1, 1, 2, 2, 1),
        channels: Sequence[int] = (16, 32, 64, 128, 256, 512),
        in_channels: int = 3,
        head_conv: int = 256,
        reid_dim: int = 128,
        num_ids: int = 14455,
        wh_weight: float = 0.1,
    ) -> None:
        super().__init__()
        self.base = DLA(levels, channels, in_channels)
        self.dla_up = DLAUp(channels[2:])
        self.ida_up = IDAUp(channels[2], channels[2:5], [1, 2, 4])
        c = channels[2]
        self.hm = head(c, head_conv, 1, bias=-2.19)  # sigmoid(-2.19) = 0.1: few false peaks
        self.wh = head(c, head_conv, 4)  # left, top, right, bottom
        self.reg = head(c, head_conv, 2)
        self.id = head(c, head_conv, reid_dim)
        self.classifier = nn.Linear(reid_dim, num_ids)
        self.emb_scale = math.sqrt(2) * math.log(num_ids - 1)
        self.s_det = nn.Parameter(torch.tensor(-1.85))  # learned task uncertainties
        self.s_id = nn.Parameter(torch.tensor(-1.05))
        self.wh_weight = wh_weight
        for m in self.base.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor, targets: Targets | None = None) -> dict[str, torch.Tensor]:
        layers = self.dla_up(self.base(x))[:3]  # strides 4, 8, 16
        self.ida_up(layers, 0)
        y = layers[-1]
        out = {"hm": self.hm(y), "wh": self.wh(y), "reg": self.reg(y), "id": self.id(y)}
        return out if targets is None else self.loss(out, targets)

    def loss(self, out: dict[str, torch.Tensor], targets: Targets) -> dict[str, torch.Tensor]:
        """Focal heatmap + L1 size and offset + ID cross-entropy, weighted by uncertainty."""
        hm, ind, mask, wh, reg, ids = targets
        mask = mask.float()
        hm_loss = focal_loss(out["hm"].float(), hm)
        wh_loss = masked_l1(gather(out["wh"].float(), ind), wh, mask)
        reg_loss = masked_l1(gather(out["reg"].float(), ind), reg, mask)
        emb = gather(out["id"].float(), ind)[mask > 0]
        logits = self.classifier(self.emb_scale * F.normalize(emb, dim=1))
        # summed then divided: a batch without objects gives 0, not the nan of an empty mean
        id_loss = F.cross_entropy(logits.float(), ids[mask > 0], reduction="sum")
        id_loss = id_loss / mask.sum().clamp(min=1)
        det_loss = hm_loss + self.wh_weight * wh_loss + reg_loss
        loss = 0.5 * (
            torch.exp(-self.s_det) * det_loss
            + torch.exp(-self.s_id) * id_loss
            + self.s_det
            + self.s_id
        )
        return {"loss": loss, "hm": hm_loss, "wh": wh_loss, "reg": reg_loss, "id": id_loss}


def gather(maps: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
    """maps [B, C, H, W] at flat positions ind [B, K] -> [B, K, C]."""
    b, c = maps.shape[:2]
    flat = maps.view(b, c, -1).permute(0, 2, 1)
    return flat.gather(1, ind.unsqueeze(2).expand(-1, -1, c))


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 over the objects present, per object coordinate (CenterNet's RegL1Loss)."""
    m = mask.unsqueeze(2).expand_as(pred)
    return F.l1_loss(pred * m, target * m, reduction="sum") / (m.sum() + 1e-4)


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss on the heatmap (alpha 2, beta 4), per object."""
    pred = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_loss = torch.log(pred) * (1 - pred) ** 2 * pos
    neg_loss = torch.log(1 - pred) * pred**2 * (1 - target) ** 4 * (1 - pos)
    return -(pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)
