"""BERT (Devlin et al. 2019): a post-LN Transformer encoder with a masked-language-model head.

The default arguments build BERT-large as HuggingFace's BertForMaskedLM builds bert-large-uncased
(335,174,458 parameters): no pooler and no next-sentence head, since training is MLM alone
(RoBERTa, Liu et al. 2019) and DDP wants every parameter in the loss.
"""

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)  # BERT's query, key and value in one matmul
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        b, t, h = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, h // self.heads).transpose(1, 3).unbind(2)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=dropout)
        return self.out(y.transpose(1, 2).reshape(b, t, h))


class Layer(nn.Module):
    """Post-LN: LayerNorm after each residual sum, as in the original Transformer and BERT."""

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.attn = SelfAttention(hidden, heads, dropout)
        self.ln1 = nn.LayerNorm(hidden, eps=1e-12)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn), nn.GELU(), nn.Linear(ffn, hidden))
        self.ln2 = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        x = self.ln1(x + self.drop(self.attn(x, keep)))
        return self.ln2(x + self.drop(self.ffn(x)))


class Bert(nn.Module):
    def __init__(
        self,
        vocab_size: int = 30522,
        hidden: int = 1024,
        layers: int = 24,
        heads: int = 16,
        ffn: int = 4096,
        max_positions: int = 512,
        type_vocab_size: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, hidden)
        self.positions = nn.Embedding(max_positions, hidden)
        self.types = nn.Embedding(type_vocab_size, hidden)
        self.ln = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(Layer(hidden, heads, ffn, dropout) for _ in range(layers))
        self.transform = nn.Sequential(  # the MLM head, before the decoder tied to self.tokens
            nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden, eps=1e-12)
        )
        self.decoder_bias = nn.Parameter(torch.zeros(vocab_size))
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:  # BERT's: N(0, 0.02) weights, zero biases
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(
        self,
        ids: torch.Tensor,
        types: torch.Tensor,
        padding: torch.Tensor | None,
        positions: torch.Tensor,
    ) -> torch.Tensor:
        """Logits (B, P, vocab) at positions (B, P) of ids (B, T); padding (B, T) is True at
        [PAD], or None when no sequence is padded (SDPA's fastest kernels take no mask)."""
        t = ids.shape[1]
        x = self.tokens(ids) + self.positions.weight[:t] + self.types(types)
        x = self.drop(self.ln(x))
        keep = None if padding is None else ~padding[:, None, None, :]  # True: attend
        for layer in self.layers:
            x = layer(x, keep)
        # The head runs on the selected positions only: 15% of the vocab-wide matmul.
        x = x.gather(1, positions[..., None].expand(-1, -1, x.shape[-1]))
        return F.linear(self.transform(x), self.tokens.weight, self.decoder_bias)
