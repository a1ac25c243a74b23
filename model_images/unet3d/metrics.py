"""The 3D U-Net's loss and quality metric as MLPerf Training's reference defines them, and
sliding-window inference over whole cases.

Dice here is per case and per foreground class: (2 |P & T| + eps) / (|P| + |T| + eps), so a class
absent from both the prediction and the truth scores 1. The reported quality is its mean over the
foreground classes (kidney, tumour) and over cases.
"""

import itertools

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6  # the reference's smoothing, in numerator and denominator


def dice_ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(1 - soft Dice of the foreground classes + cross-entropy) / 2; labels (N, 1, D, H, W)."""
    logits, labels = logits.float(), labels[:, 0].long()  # the loss in fp32 under autocast
    spatial = (2, 3, 4)
    probs = logits.softmax(1)[:, 1:]
    truth = F.one_hot(labels, logits.shape[1]).permute(0, 4, 1, 2, 3)[:, 1:]
    overlap = (probs * truth).sum(spatial)
    dice = (2 * overlap + EPS) / (probs.sum(spatial) + truth.sum(spatial) + EPS)
    return ((1 - dice).mean() + F.cross_entropy(logits, labels)) / 2


def case_dice(prediction: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Hard Dice (N, num_classes - 1) of each case's foreground classes, from class maps."""
    spatial = tuple(range(1, prediction.dim()))
    scores = []
    for c in range(1, num_classes):
        p, t = prediction == c, labels == c
        overlap = (p & t).sum(spatial)
        scores.append((2 * overlap + EPS) / (p.sum(spatial) + t.sum(spatial) + EPS))
    return torch.stack(scores, 1).double()


def window_weights(patch: int, device: torch.device) -> torch.Tensor:
    """Gaussian importance (sigma patch / 8, cube root, peak 1): a window's centre counts most."""
    d = torch.arange(patch, dtype=torch.float32, device=device) - (patch - 1) / 2
    g = torch.exp(-0.5 * (d / (0.125 * patch)) ** 2)
    return (g[:, None, None] * g[None, :, None] * g[None, None, :]).pow(1 / 3)


def starts(size: int, patch: int, stride: int) -> list[int]:
    """Window offsets along one axis of size >= patch: every stride, the last one flush."""
    return sorted({*range(0, size - patch + 1, stride), size - patch})


@torch.no_grad()
def sliding_window(
    net: nn.Module, x: torch.Tensor, patch: int, overlap: float = 0.5, pad_value: float = 0.0
) -> torch.Tensor:
    """Logits (N, classes, D, H, W) of a volume x (N, C, D, H, W) of any size: patch^3 windows
    overlapping by `overlap`, blended with Gaussian weights; padded with pad_value where a side
    is shorter than patch. A volume of exactly patch^3 is one plain forward pass."""
    shape = x.shape[2:]
    pad = [m for s in reversed(shape) for m in (0, max(0, patch - s))]
    x = F.pad(x, pad, value=pad_value)
    if x.shape[2:] == (patch,) * 3:
        return net(x).float()[..., : shape[0], : shape[1], : shape[2]]
    stride = max(1, int(patch * (1 - overlap)))
    weights = window_weights(patch, x.device)
    total = norm = None
    for i, j, k in itertools.product(*(starts(s, patch, stride) for s in x.shape[2:])):
        window = (..., slice(i, i + patch), slice(j, j + patch), slice(k, k + patch))
        logits = net(x[window]).float()
        if total is None:
            total = logits.new_zeros(*logits.shape[:2], *x.shape[2:])
            norm = logits.new_zeros(x.shape[2:])
        total[window] += logits * weights
        norm[window[1:]] += weights
    return (total / norm)[..., : shape[0], : shape[1], : shape[2]]
