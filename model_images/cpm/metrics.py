"""The quality metric: next-token accuracy (lm_accuracy), top-1 over every predicted position."""

import torch


def next_token_hits(logits: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
    """(positions whose likeliest token is the next one, positions) for logits (..., vocab)."""
    return (logits.argmax(-1) == targets).sum().item(), targets.numel()
