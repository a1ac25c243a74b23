"""The official Wave-MLP recipe's batch mixing (Mixup / CutMix); its quality metric, top-1,
is the library's (Workload.top1)."""

import math

import torch
import torch.nn.functional as F


def mix(
    x: torch.Tensor, labels: torch.Tensor, num_classes: int, mixup: float, cutmix: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al. 2018) or CutMix (Yun et al. 2019), one of the two at random per batch
    as timm's Mixup does: each image is blended with the batch's mirror image (x.flip(0)), and
    its target becomes the same blend of the two one-hot labels.

    mixup, cutmix: the Beta(alpha, alpha) parameters; 0 turns that kind off.
    """
    use_cutmix = cutmix > 0 and (mixup <= 0 or torch.rand(()).item() < 0.5)
    alpha = cutmix if use_cutmix else mixup
    lam = torch.distributions.Beta(alpha, alpha).sample().item()
    other = x.flip(0)
    if use_cutmix:  # paste a box of (1 - lam) of the area; lam becomes the kept area exactly
        h, w = x.shape[-2:]
        cut = math.sqrt(1 - lam)
        cy, cx = torch.randint(h, ()).item(), torch.randint(w, ()).item()
        y0, y1 = max(cy - round(h * cut / 2), 0), min(cy + round(h * cut / 2), h)
        x0, x1 = max(cx - round(w * cut / 2), 0), min(cx + round(w * cut / 2), w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = other[..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        x = lam * x + (1 - lam) * other
    one_hot = F.one_hot(labels, num_classes).to(x.dtype)
    return x, lam * one_hot + (1 - lam) * one_hot.flip(0)
