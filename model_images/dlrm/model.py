"""DLRM (Naumov et al. 2019): embeddings for the categorical features, an MLP for the dense ones,
their pairwise dot products, and an MLP over those to one click logit.

The default arguments build the MLPerf Training DLRM v1 for Criteo 1TB (facebookresearch/dlrm
with --max-ind-range=40000000): 26 tables of dim 128 with its cardinalities, bottom MLP
13-512-256-128, top MLP 479-1024-1024-512-256-1; 24,036,595,969 parameters.
"""

import itertools
from collections.abc import Sequence

import torch
from torch import nn

# The rows of MLPerf DLRM v1's tables: Criteo 1TB's categorical values, each hashed into 40M
# (--max-ind-range=40000000), counted; as facebookresearch/dlrm's tools/visualize.py lists them.
CRITEO_1TB_TABLES = (
    39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346, 10,
    2208, 11938, 155, 4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36,
)  # fmt: skip


def mlp(sizes: Sequence[int], last_relu: bool) -> nn.Sequential:
    """Linear layers between consecutive sizes, ReLU after each (but the last, unless asked)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        linear = nn.Linear(n_in, n_out)
        # The reference's initialisation: Glorot-normal weights, N(0, 1/n_out) biases.
        nn.init.normal_(linear.weight, 0.0, (2 / (n_in + n_out)) ** 0.5)
        nn.init.normal_(linear.bias, 0.0, (1 / n_out) ** 0.5)
        layers.append(linear)
        if last_relu or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DLRM(nn.Module):
    def __init__(
        self,
        num_dense: int = 13,
        table_sizes: Sequence[int] = CRITEO_1TB_TABLES,
        embedding_dim: int = 128,
        bottom_mlp: Sequence[int] = (512, 256, 128),
        top_mlp: Sequence[int] = (1024, 1024, 512, 256, 1),
        sparse: bool = False,
    ) -> None:
        super().__init__()
        if bottom_mlp[-1] != embedding_dim:
            raise ValueError("the bottom MLP must end at embedding_dim: its output is dotted too")
        # sparse: row-sparse gradients (the reference's choice), so that SGD touches only the rows
        # a batch looked up; 40M-row tables cannot carry a dense gradient as well.
        self.tables = nn.ModuleList(
            nn.Embedding(n, embedding_dim, sparse=sparse) for n in table_sizes
        )
        for table, n in zip(self.tables, table_sizes, strict=True):
            nn.init.uniform_(table.weight, -(n**-0.5), n**-0.5)
        self.bottom = mlp([num_dense, *bottom_mlp], last_relu=True)
        vectors = len(table_sizes) + 1  # the embeddings and the bottom MLP's output
        i, j = torch.tril_indices(vectors, vectors, offset=-1)  # pairs below the diagonal
        self.register_buffer("pair_i", i, persistent=False)
        self.register_buffer("pair_j", j, persistent=False)
        self.top = mlp([embedding_dim + len(i), *top_mlp], last_relu=False)

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """dense: (B, num_dense) float; sparse: (B, tables) row indices -> (B,) click logits."""
        x = self.bottom(dense)
        z = torch.stack([x] + [t(sparse[:, k]) for k, t in enumerate(self.tables)], dim=1)
        dots = torch.bmm(z, z.transpose(1, 2))  # (B, 27, 27): every pair's dot product
        return self.top(torch.cat([x, dots[:, self.pair_i, self.pair_j]], dim=1)).squeeze(1)
