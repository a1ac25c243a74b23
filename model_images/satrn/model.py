"""SATRN (Lee et al. 2020, "On Recognizing Texts of Arbitrary Shapes with 2D Self-Attention").

Built module for module as MMOCR's SATRN (ShallowCNN, SATRNEncoder, NRTRDecoder; configs
textrecog/satrn/satrn_academic.py): a shallow CNN to 1/4 resolution, an adaptive 2D positional
encoding, pre-norm encoder layers of 2D self-attention with a locality-aware feedforward
(1x1 conv, depthwise 3x3 conv, 1x1 conv, each with BatchNorm and ReLU) and a pre-norm
transformer decoder. The default arguments build satrn_academic (65,640,797 parameters).

Token ids: PAD = 0, one shared start/end token BOS = EOS = 1 (MMOCR's same_start_end), then the
data's unknown token and its characters.
"""

import torch
import torch.nn.functional as F
from torch import nn


def sinusoid_table(n_position: int, d: int) -> torch.Tensor:
    """(n_position, d): sin on even channels, cos on odd ones (Vaswani et al. 2017)."""
    position = torch.arange(n_position, dtype=torch.float32).unsqueeze(1)
    rate = torch.pow(10000.0, -2 * (torch.arange(d) // 2) / d)
    table = position * rate
    table[:, 0::2], table[:, 1::2] = table[:, 0::2].sin(), table[:, 1::2].cos()
    return table


def conv_bn_relu(c_in: int, c_out: int, kernel: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class Attention(nn.Module):
    """Multi-head attention without projection biases (MMOCR's qkv_bias=False)."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v = (nn.Linear(d, d, bias=False) for _ in range(3))
        self.out = nn.Linear(d, d, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, causal: bool = False) -> torch.Tensor:
        n, t, d = x.shape
        q = self.q(x).view(n, t, self.heads, -1).transpose(1, 2)
        k = self.k(memory).view(n, memory.shape[1], self.heads, -1).transpose(1, 2)
        v = self.v(memory).view(n, memory.shape[1], self.heads, -1).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal)
        return self.drop(self.out(y.transpose(1, 2).reshape(n, t, d)))


class EncoderLayer(nn.Module):
    """Pre-norm 2D self-attention, then the locality-aware feedforward on the h x w map."""

    def __init__(self, d: int, heads: int, d_inner: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, heads, dropout)
        self.ff = nn.Sequential(  # as MMOCR: BN + ReLU after every conv, the last one too
            conv_bn_relu(d, d_inner, 1),
            conv_bn_relu(d_inner, d_inner, 3, groups=d_inner),
            conv_bn_relu(d_inner, d, 1),
        )

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y)
        y = self.norm2(x).transpose(1, 2).unflatten(2, (h, w))  # (N, C, h, w) for the convs
        return x + self.ff(y).flatten(2).transpose(1, 2)


class DecoderLayer(nn.Module):
    """Pre-norm causal self-attention, attention over the encoder, GELU feedforward."""

    def __init__(self, d: int, heads: int, d_inner: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = Attention(d, heads, dropout)
        self.enc_attn = Attention(d, heads, dropout)
        self.ff = nn.Sequential(
            nn.Linear(d, d_inner), nn.GELU(), nn.Linear(d_inner, d), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.self_attn(y, y, causal=True)
        x = x + self.enc_attn(self.norm2(x), memory)
        return x + self.ff(self.norm3(x))


class SATRN(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        d_model: int = 512,
        heads: int = 8,
        enc_layers: int = 12,
        enc_inner: int = 2048,
        dec_layers: int = 6,
        dec_inner: int = 2048,
        num_classes: int = 93,
        max_len: int = 25,
        n_position: int = 100,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.cnn = nn.Sequential(  # ShallowCNN: two conv-BN-ReLU-maxpool stages, 1/4 resolution
            conv_bn_relu(in_channels, d_model // 2, 3),
            nn.MaxPool2d(2),
            conv_bn_relu(d_model // 2, d_model, 3),
            nn.MaxPool2d(2),
        )
        # Adaptive 2D positional encoding: sinusoids along height and width, each scaled per
        # channel by a gate computed from the image's pooled features.
        table = sinusoid_table(n_position, d_model).t()
        self.register_buffer("pos_h", table.view(1, d_model, n_position, 1), persistent=False)
        self.register_buffer("pos_w", table.view(1, d_model, 1, n_position), persistent=False)
        self.scale_h, self.scale_w = (
            nn.Sequential(
                nn.Conv2d(d_model, d_model, 1),
                nn.ReLU(inplace=True),
                nn.Conv2d(d_model, d_model, 1),
                nn.Sigmoid(),
            )
            for _ in range(2)
        )
        self.pos_drop = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(
            EncoderLayer(d_model, heads, enc_inner, dropout) for _ in range(enc_layers)
        )
        self.enc_norm = nn.LayerNorm(d_model)

        self.embed = nn.Embedding(num_classes, d_model, padding_idx=0)
        self.register_buffer("pos_1d", sinusoid_table(200, d_model), persistent=False)
        self.dec_drop = nn.Dropout(dropout)
        self.decoder = nn.ModuleList(
            DecoderLayer(d_model, heads, dec_inner, dropout) for _ in range(dec_layers)
        )
        self.dec_norm = nn.LayerNorm(d_model, eps=1e-6)
        self.classifier = nn.Linear(d_model, num_classes)

        for name, m in self.named_modules():  # MMOCR: Kaiming in the CNN, Xavier elsewhere
            if isinstance(m, nn.Conv2d) and name.startswith("cnn"):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, H/4 * W/4, d_model) features."""
        x = self.cnn(images)
        _, _, h, w = x.shape
        pooled = F.adaptive_avg_pool2d(x, 1)
        pos_h, pos_w = self.pos_h[:, :, :h], self.pos_w[:, :, :, :w]
        x = self.pos_drop(x + self.scale_h(pooled) * pos_h + self.scale_w(pooled) * pos_w)
        x = x.flatten(2).transpose(1, 2)
        for layer in self.encoder:
            x = layer(x, h, w)
        return self.enc_norm(x)

    def decode(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Logits (N, T, classes) for the next token after each of tokens (N, T)."""
        x = self.dec_drop(self.embed(tokens) + self.pos_1d[: tokens.shape[1]])
        for layer in self.decoder:
            x = layer(x, memory)
        return self.classifier(self.dec_norm(x))

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: tokens start with BOS; logits predict each next token."""
        return self.decode(tokens, self.encode(images))

    @torch.no_grad()
    def generate(self, images: torch.Tensor, bos: int = 1) -> torch.Tensor:
        """Greedy autoregressive decoding: (N, max_len) predicted ids, after BOS. Stops early
        once every sequence has produced the end token (the same id as BOS)."""
        memory = self.encode(images)
        tokens = torch.full((len(images), 1), bos, dtype=torch.long, device=images.device)
        done = torch.zeros(len(images), dtype=torch.bool, device=images.device)
        for _ in range(self.max_len):
            step = self.decode(tokens, memory)[:, -1].argmax(-1)
            tokens = torch.cat([tokens, step.unsqueeze(1)], 1)
            done |= step == bos
            if done.all():
                break
        return tokens[:, 1:]
