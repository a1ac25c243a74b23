"""Wave-MLP (Tang et al., CVPR 2022: "An Image Patch is a Wave: Phase-Aware Vision MLP").

Each token is a wave: its amplitude comes from a channel-FC, its phase is estimated from the
token itself, and Euler's formula unfolds the wave into a real cos part and sin part, which
token-FCs then mix along the rows and along the columns of the image. The default arguments
build Wave-MLP-T exactly as the official code (huawei-noah/Efficient-AI-Backbones,
wavemlp_pytorch/models/wavemlp.py) does: 17,193,160 parameters.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

TOKEN_KERNEL = 7  # tokens each token-FC mixes along a row or a column (the official code's 7)


class Mlp(nn.Module):
    """Channel MLP on NCHW maps: 1x1 convs are FC layers applied to every token."""

    def __init__(self, dim: int, hidden: int, out: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, out or dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def phase(dim: int) -> nn.Sequential:
    """Phase estimation: a channel-FC of the token itself (the official 'fc' mode of Wave-MLP-T)."""
    return nn.Sequential(nn.Conv2d(dim, dim, 1), nn.BatchNorm2d(dim), nn.ReLU())


class PATM(nn.Module):
    """Phase-aware token mixing: waves mixed along H, along W, and a plain channel-FC path,
    summed with weights the reweighting MLP predicts per image and channel."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc_h = nn.Conv2d(dim, dim, 1, bias=False)  # amplitudes
        self.fc_w = nn.Conv2d(dim, dim, 1, bias=False)
        self.fc_c = nn.Conv2d(dim, dim, 1, bias=False)
        self.theta_h_conv, self.theta_w_conv = phase(dim), phase(dim)
        # Token-FCs as grouped convs over the 2*dim unfolded channels [x cos θ, x sin θ], as in
        # the official code: each output channel mixes 2 of them over TOKEN_KERNEL tokens.
        k = TOKEN_KERNEL
        self.tfc_h = nn.Conv2d(2 * dim, dim, (1, k), padding=(0, k // 2), groups=dim, bias=False)
        self.tfc_w = nn.Conv2d(2 * dim, dim, (k, 1), padding=(k // 2, 0), groups=dim, bias=False)
        self.reweight = Mlp(dim, dim // 4, dim * 3)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        h = self.tfc_h(unfold_wave(self.fc_h(x), self.theta_h_conv(x)))
        w = self.tfc_w(unfold_wave(self.fc_w(x), self.theta_w_conv(x)))
        fc = self.fc_c(x)
        a = self.reweight(F.adaptive_avg_pool2d(h + w + fc, 1)).view(b, c, 3)
        a = a.permute(2, 0, 1).softmax(0)[..., None, None]  # 3 x B x C x 1 x 1, summing to 1
        return self.proj(h * a[0] + w * a[1] + fc * a[2])


def unfold_wave(amplitude: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The wave |z| e^{iθ} as real channels by Euler's formula: [|z| cos θ, |z| sin θ]."""
    return torch.cat([amplitude * torch.cos(theta), amplitude * torch.sin(theta)], dim=1)


class WaveBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = PATM(dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropped(self.attn(self.norm1(x)))
        return x + self.dropped(self.mlp(self.norm2(x)))

    def dropped(self, branch: torch.Tensor) -> torch.Tensor:
        """Stochastic depth: drop the branch for a random part of the batch while training."""
        if not self.training or self.drop_path == 0:
            return branch
        keep = branch.new_empty(branch.shape[0], 1, 1, 1).bernoulli_(1 - self.drop_path)
        return branch * keep / (1 - self.drop_path)


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
    """Patch embedding and downsampling: an overlapping strided conv, then BatchNorm."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, stride, padding), nn.BatchNorm2d(out_ch))


class WaveMLP(nn.Module):
    def __init__(
        self,
        layers: Sequence[int] = (2, 2, 4, 2),
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        mlp_ratios: Sequence[float] = (4, 4, 4, 4),
        in_channels: int = 3,
        num_classes: int = 1000,
        patch_size: int = 7,  # the stem: 7x7 patches at stride 4, so 224 -> 56x56 tokens
        patch_stride: int = 4,
        patch_padding: int = 2,
        drop_path: float = 0.0,  # stochastic depth, rising linearly to this over the blocks
    ) -> None:
        super().__init__()
        self.patch_embed = conv_bn(
            in_channels, embed_dims[0], patch_size, patch_stride, patch_padding
        )
        blocks = sum(layers)
        rates = [drop_path * i / max(1, blocks - 1) for i in range(blocks)]
        stages: list[nn.Module] = []
        for i, (n, dim, ratio) in enumerate(zip(layers, embed_dims, mlp_ratios, strict=True)):
            if i > 0:  # halve the resolution between stages
                stages.append(conv_bn(embed_dims[i - 1], dim, 3, 2, 1))
            start = sum(layers[:i])
            stages += [WaveBlock(dim, ratio, rates[start + j]) for j in range(n)]
        self.stages = nn.Sequential(*stages)
        self.norm = nn.BatchNorm2d(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)  # as the official code; convs: default
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.stages(self.patch_embed(x)))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
