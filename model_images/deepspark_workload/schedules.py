"""Learning-rate schedules as multipliers of the base rate, step -> factor: framework-free, for
torch's LambdaLR and paddle's LambdaDecay alike."""

import math
from collections.abc import Callable


def warmup_cosine(warmup_fraction: float, total: int) -> Callable[[int], float]:
    """Linear warmup over the first warmup_fraction of total steps, then cosine decay to zero
    (Goyal et al. 2017; Loshchilov and Hutter 2017)."""
    warmup = max(1, round(warmup_fraction * total))
    return lambda s: min(1, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / total))
