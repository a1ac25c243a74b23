"""instant-ngp's NeRF (Müller et al. 2022, "Instant Neural Graphics Primitives with a
Multiresolution Hash Encoding"), in plain torch.

A point's position goes through a multiresolution hash encoding (trilinear interpolation of
learned feature vectors at the 8 corners of its cell, at L resolutions from N_min to N_max), a
small density MLP gives log-density and 15 more features, a spherical-harmonics encoding of the
view direction joins them in a colour MLP. Rays are marched with uniform samples between their
entry and exit of the scene's box and alpha-composited over the background. The MLPs carry no
biases, as tiny-cuda-nn's fully fused MLPs.

The default arguments build the paper's NeRF model: 16 levels of 2 features, 2^19 entries a
level, N_min 16, N_max 2048 (12,207,258 parameters: model_images/ngp_nerf/README.md).
"""

import itertools
import math

import torch
from torch import nn

PRIMES = (1, 2654435761, 805459861)  # the paper's spatial hash, one prime per dimension
CORNERS = torch.tensor([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)])  # (8, 3) offsets


def level_resolutions(levels: int, base_resolution: int, finest_resolution: int) -> list[int]:
    """N_l = floor(N_min * b^l), with b = exp((ln N_max - ln N_min) / (L - 1)) (paper, eq. 2-3)."""
    growth = math.exp((math.log(finest_resolution) - math.log(base_resolution)) / (levels - 1))
    return [math.floor(base_resolution * growth**level + 1e-6) for level in range(levels)]


class HashGrid(nn.Module):
    """Multiresolution hash encoding of points in [0, 1]^3 to levels x features values.

    A level whose dense grid of (N_l + 1)^3 vertices fits in the table indexes it directly (a
    one-to-one map); a finer one hashes vertex (i, j, k) to (i*p1 xor j*p2 xor k*p3) mod T.
    All levels live in one table with per-level offsets, so one gather serves them all.
    """

    def __init__(
        self,
        levels: int = 16,
        features: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        finest_resolution: int = 2048,
    ) -> None:
        super().__init__()
        table = 2**log2_table_size
        resolutions = level_resolutions(levels, base_resolution, finest_resolution)
        sizes = [min(table, (n + 1) ** 3) for n in resolutions]
        offsets = [0, *itertools.accumulate(sizes)][:-1]
        self.register_buffer("resolution", torch.tensor(resolutions), persistent=False)
        self.register_buffer("offset", torch.tensor(offsets), persistent=False)
        self.register_buffer("size", torch.tensor(sizes), persistent=False)
        self.register_buffer("dense", torch.tensor([s < table for s in sizes]), persistent=False)
        self.register_buffer("corners", CORNERS.clone(), persistent=False)
        self.register_buffer("primes", torch.tensor(PRIMES), persistent=False)
        self.table = nn.Parameter(torch.empty(sum(sizes), features))
        nn.init.uniform_(self.table, -1e-4, 1e-4)  # the paper's initialisation
        self.out_features = levels * features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (P, 3) in [0, 1] -> (P, levels * features), interpolated in fp32."""
        scaled = x.float()[:, None, :] * self.resolution[:, None]  # (P, L, 3)
        cell = scaled.floor()
        frac = scaled - cell  # position within the cell, for the trilinear weights
        vertex = cell.long()[:, :, None, :] + self.corners  # (P, L, 8, 3)
        side = (self.resolution + 1)[:, None]
        dense = vertex[..., 0] + side * (vertex[..., 1] + side * vertex[..., 2])
        hashed = vertex * self.primes
        hashed = hashed[..., 0] ^ hashed[..., 1] ^ hashed[..., 2]
        index = torch.where(self.dense[:, None], dense, hashed) % self.size[:, None]
        feats = self.table[index + self.offset[:, None]]  # (P, L, 8, F)
        weight = torch.where(self.corners.bool(), frac[:, :, None, :], 1 - frac[:, :, None, :])
        return (feats * weight.prod(-1, keepdim=True)).sum(2).flatten(1)


def spherical_harmonics(d: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics of unit directions (P, 3) up to degree 4: (P, 16) coefficients,
    tiny-cuda-nn's SphericalHarmonics encoding (its constants and signs)."""
    x, y, z = d.float().unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    return torch.stack(
        [
            torch.full_like(x, 0.28209479177387814),
            -0.48860251190291987 * y,
            0.48860251190291987 * z,
            -0.48860251190291987 * x,
            1.0925484305920792 * x * y,
            -1.0925484305920792 * y * z,
            0.94617469575755997 * zz - 0.31539156525251999,
            -1.0925484305920792 * x * z,
            0.54627421529603959 * (xx - yy),
            0.59004358992664352 * y * (-3 * xx + yy),
            2.8906114426405538 * x * y * z,
            0.45704579946446572 * y * (1 - 5 * zz),
            0.3731763325901154 * z * (5 * zz - 3),
            0.45704579946446572 * x * (1 - 5 * zz),
            1.4453057213202769 * z * (xx - yy),
            0.59004358992664352 * x * (-xx + 3 * yy),
        ],
        -1,
    )


def mlp(widths: list[int]) -> nn.Sequential:
    """Linear layers without biases, ReLU between them (tiny-cuda-nn's FullyFusedMLP)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b, bias=False))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class InstantNGP(nn.Module):
    """Colours of rays (origins, unit directions) rendered through the box [-bound, bound]^3."""

    def __init__(
        self,
        levels: int = 16,
        features: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        finest_resolution: int = 2048,
        hidden: int = 64,
        geo_features: int = 16,
        color_layers: int = 2,
        bound: float = 1.5,
        samples: int = 128,
        background: float = 1.0,
    ) -> None:
        super().__init__()
        self.grid = HashGrid(levels, features, log2_table_size, base_resolution, finest_resolution)
        self.density = mlp([self.grid.out_features, hidden, geo_features])
        self.color = mlp([16 + geo_features, *[hidden] * color_layers, 3])
        self.bound, self.samples, self.background = bound, samples, background

    def forward(self, origins: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
        """(R, 3) origins and unit directions -> (R, 3) colours in [0, 1]."""
        origins, dirs = origins.float(), dirs.float()
        near, far = self.box_span(origins, dirs)
        steps = torch.arange(self.samples, device=origins.device, dtype=torch.float32)
        # Midpoints of equal segments; jittered within them while training (stratified).
        offset = torch.rand_like(near) if self.training else torch.full_like(near, 0.5)
        delta = (far - near) / self.samples  # (R, 1); 0 where the ray misses the box
        t = near + (steps + offset) * delta  # (R, S)
        points = origins[:, None] + t[..., None] * dirs[:, None]  # (R, S, 3)
        unit = ((points + self.bound) / (2 * self.bound)).clamp(0, 1).reshape(-1, 3)
        h = self.density(self.grid(unit))  # (R*S, geo_features); [:, 0] is log-density
        sh = spherical_harmonics(dirs)[:, None].expand(-1, self.samples, -1).reshape(-1, 16)
        rgb = torch.sigmoid(self.color(torch.cat([sh.to(h.dtype), h], -1)).float())
        sigma = torch.exp(h[:, 0].float().clamp(max=15))  # the paper's exponential activation
        return self.composite(sigma.view_as(t), rgb.view(*t.shape, 3), delta)

    def box_span(self, origins: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Where each ray enters and leaves the box (slab test); near = far for a miss."""
        inv = 1 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
        a, b = (-self.bound - origins) * inv, (self.bound - origins) * inv
        near = torch.minimum(a, b).amax(-1, keepdim=True).clamp(min=0)
        far = torch.maximum(a, b).amin(-1, keepdim=True)
        return near, torch.maximum(far, near)

    def composite(
        self, sigma: torch.Tensor, rgb: torch.Tensor, delta: torch.Tensor
    ) -> torch.Tensor:
        """Alpha compositing (NeRF eq. 3): sum_i T_i (1 - exp(-sigma_i delta)) c_i + T_end bg."""
        alpha = 1 - torch.exp(-sigma * delta)  # (R, S)
        through = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha], 1), 1)
        weights = alpha * through[:, :-1]
        return (weights[..., None] * rgb).sum(1) + through[:, -1:] * self.background
