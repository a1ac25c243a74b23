"""The masked-LM loss and its quality metric, over the selected positions alone."""

import torch
import torch.nn.functional as F

IGNORE = -100  # an unused prediction slot's label (data.IGNORE)


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the selected positions; logits (B, P, V), labels (B, P)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)


def mlm_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(correct top-1 predictions, selected positions): sum both over the eval set, then divide."""
    selected = labels != IGNORE
    correct = (logits.argmax(-1) == labels) & selected
    return int(correct.sum()), int(selected.sum())
