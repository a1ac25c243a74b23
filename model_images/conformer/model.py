"""Conformer (Gulati et al. 2020, arXiv:2005.08100) encoder with a CTC head.

Conv2d subsampling (4x in time), then Conformer blocks: half-step feed-forward, multi-head
self-attention with Transformer-XL relative positions, convolution module, half-step
feed-forward, LayerNorm. A linear layer maps each frame to the character labels (blank = 0).
The default arguments build Conformer-M's encoder (16 blocks, d 256, 4 heads, kernel 31) over
80 log-mel bins and LibriSpeech's 28 characters + blank: 27,269,405 parameters.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class Subsampling(nn.Module):
    """Two 3x3 stride-2 convolutions over (time, mel), then a linear map of each frame to d."""

    def __init__(self, in_features: int, dim: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, dim, 3, 2), nn.ReLU(), nn.Conv2d(dim, dim, 3, 2), nn.ReLU()
        )
        self.out = nn.Linear(dim * (((in_features - 1) // 2 - 1) // 2), dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x.unsqueeze(1))  # (batch, dim, frames / 4, mels / 4)
        x = self.out(x.transpose(1, 2).flatten(2))
        return x, ((lengths - 1) // 2 - 1) // 2  # each unpadded conv: (n - 3) // 2 + 1


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, hidden),
            nn.SiLU(),  # Swish
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def relative_positions(frames: int, dim: int, device: torch.device) -> torch.Tensor:
    """Sinusoidal embeddings (2 frames - 1, dim) of the distances frames-1, ..., -(frames-1)."""
    distance = torch.arange(frames - 1, -frames, -1.0, device=device).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(2 * frames - 1, dim, device=device)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(distance * freq), torch.cos(distance * freq)
    return pe


def rel_shift(scores: torch.Tensor) -> torch.Tensor:
    """(..., T, 2T-1) scores against distances T-1 ... -(T-1) -> (..., T, T) with [i, j] the
    score for distance i - j (Transformer-XL's shift: pad, reshape, drop the first row)."""
    *batch, t, n = scores.shape
    padded = F.pad(scores, (1, 0)).view(*batch, n + 1, t)
    return padded[..., 1:, :].reshape(*batch, t, n)[..., :t]


class RelPositionAttention(nn.Module):
    """Multi-head self-attention with relative positions (Dai et al. 2019, Transformer-XL):
    score(i, j) = (q_i + u) k_j + (q_i + v) W_pos p(i - j), u and v learned per head."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.pos = nn.Linear(dim, dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(heads, dim // heads))
        self.pos_bias_v = nn.Parameter(torch.zeros(heads, dim // heads))
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, t, 3, self.heads, -1).unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (b, heads, t, d_k)
        p = self.pos(pos).view(-1, self.heads, d // self.heads).transpose(0, 1)
        u, w = self.pos_bias_u.to(q.dtype).unsqueeze(1), self.pos_bias_v.to(q.dtype).unsqueeze(1)
        # The position term enters as an additive bias; scaled like the content term.
        bias = rel_shift((q + w) @ p.transpose(-1, -2)) / math.sqrt(d // self.heads)
        bias = bias.masked_fill(pad[:, None, None, :], float("-inf"))  # padded keys
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q + u, k, v, attn_mask=bias, dropout_p=dropout)
        return self.drop(self.out(out.transpose(1, 2).reshape(b, t, d)))


class ConvModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, BatchNorm, Swish, pointwise conv."""

    def __init__(self, dim: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.pointwise1 = nn.Conv1d(dim, 2 * dim, 1)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.bn = nn.BatchNorm1d(dim)
        self.pointwise2 = nn.Conv1d(dim, dim, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        x = F.glu(self.pointwise1(self.norm(x).transpose(1, 2)), dim=1)
        x = x.masked_fill(pad.unsqueeze(1), 0.0)  # padding must not leak into real frames
        x = F.silu(self.bn(self.depthwise(x)))
        return self.drop(self.pointwise2(x).transpose(1, 2))


class ConformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.ff1 = FeedForward(dim, ffn, dropout)
        self.attn = RelPositionAttention(dim, heads, dropout)
        self.conv = ConvModule(dim, kernel, dropout)
        self.ff2 = FeedForward(dim, ffn, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)  # macaron: two half-step feed-forwards around the core
        x = x + self.attn(x, pos, pad)
        x = x + self.conv(x, pad)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class Conformer(nn.Module):
    def __init__(
        self,
        in_features: int = 80,
        dim: int = 256,
        layers: int = 16,
        heads: int = 4,
        ffn: int = 1024,
        kernel: int = 31,
        vocab_size: int = 29,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.subsampling = Subsampling(in_features, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            ConformerBlock(dim, heads, ffn, kernel, dropout) for _ in range(layers)
        )
        self.head = nn.Linear(dim, vocab_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (batch, frames, mels), lengths: valid frames -> (logits (batch, frames / 4,
        labels), their valid frames)."""
        x, lengths = self.subsampling(x, lengths)
        x = self.drop(x)
        pad = torch.arange(x.shape[1], device=x.device) >= lengths.unsqueeze(1)
        pos = relative_positions(x.shape[1], x.shape[2], x.device).to(x.dtype)
        for block in self.blocks:
            x = block(x, pos, pad)
        return self.head(x), lengths
