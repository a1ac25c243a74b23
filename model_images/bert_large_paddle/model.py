"""BERT (Devlin et al. 2019) in paddle.nn: a post-LN Transformer encoder with a masked-LM head.

The PyTorch twin's model (model_images/bert_large/model.py) layer for layer, initialised the
same way. The default arguments build BERT-large as HuggingFace's BertForMaskedLM builds
bert-large-uncased (335,174,458 parameters): no pooler and no next-sentence head, since training
is MLM alone (RoBERTa, Liu et al. 2019) and DataParallel wants every parameter in the loss.
paddle's Linear keeps its weight as (in, out), torch's as (out, in): the same count.
"""

import paddle
import paddle.nn.functional as F
from paddle import nn
from paddle.nn import initializer


class SelfAttention(nn.Layer):
    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)  # BERT's query, key and value in one matmul
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: paddle.Tensor, keep: paddle.Tensor | None) -> paddle.Tensor:
        b, t, h = x.shape
        # paddle's attention takes (batch, time, heads, head size), not torch's heads-first
        q, k, v = self.qkv(x).reshape([b, t, 3, self.heads, h // self.heads]).unbind(2)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=keep, dropout_p=self.dropout, training=self.training
        )
        return self.out(y.reshape([b, t, h]))


class Layer(nn.Layer):
    """Post-LN: LayerNorm after each residual sum, as in the original Transformer and BERT."""

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.attn = SelfAttention(hidden, heads, dropout)
        self.ln1 = nn.LayerNorm(hidden, epsilon=1e-12)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn), nn.GELU(), nn.Linear(ffn, hidden))
        self.ln2 = nn.LayerNorm(hidden, epsilon=1e-12)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: paddle.Tensor, keep: paddle.Tensor | None) -> paddle.Tensor:
        x = self.ln1(x + self.drop(self.attn(x, keep)))
        return self.ln2(x + self.drop(self.ffn(x)))


class Bert(nn.Layer):
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
        self.ln = nn.LayerNorm(hidden, epsilon=1e-12)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.LayerList(Layer(hidden, heads, ffn, dropout) for _ in range(layers))
        self.transform = nn.Sequential(  # the MLM head, before the decoder tied to self.tokens
            nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden, epsilon=1e-12)
        )
        self.decoder_bias = self.create_parameter(
            [vocab_size], is_bias=True, default_initializer=initializer.Constant(0.0)
        )
        normal, zero = initializer.Normal(std=0.02), initializer.Constant(0.0)
        for m in self.sublayers():  # BERT's: N(0, 0.02) weights, zero biases
            if isinstance(m, nn.Linear | nn.Embedding):
                normal(m.weight)
            if isinstance(m, nn.Linear) and m.bias is not None:
                zero(m.bias)

    def forward(
        self,
        ids: paddle.Tensor,
        types: paddle.Tensor,
        padding: paddle.Tensor | None,
        positions: paddle.Tensor,
    ) -> paddle.Tensor:
        """Logits (B, P, vocab) at positions (B, P) of ids (B, T); padding (B, T) is True at
        [PAD], or None when no sequence is padded."""
        t = ids.shape[1]
        x = self.tokens(ids) + self.positions.weight[:t] + self.types(types)
        x = self.drop(self.ln(x))
        keep = None if padding is None else ~padding[:, None, None, :]  # True: attend
        for layer in self.layers:
            x = layer(x, keep)
        # The head runs on the selected positions only: 15% of the vocab-wide matmul.
        index = positions.unsqueeze(-1).expand([-1, -1, x.shape[-1]])
        x = paddle.take_along_axis(x, index, axis=1)
        return paddle.matmul(self.transform(x), self.tokens.weight, transpose_y=True) + (
            self.decoder_bias
        )
