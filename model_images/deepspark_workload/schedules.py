"""Learning-rate schedules as multipliers of the base rate, step -> factor: framework-free, for
torch's LambdaLR and paddle's LambdaDecay alike.

Every workload's schedule is `warmup`: a linear warmup over a fraction of the run's steps,
times the recipe's decay (cosine, linear, steps, ...); the common decays are named here.
"""

import math
from collections.abc import Callable, Sequence

Schedule = Callable[[int], float]


def warmup_steps(fraction: float, total: int) -> int:
    """The steps of a warmup over fraction of total steps: at least one."""
    return max(1, round(fraction * total))


def warmup(fraction: float, total: int, decay: Schedule = lambda s: 1) -> Schedule:
    """Linear warmup from 1/steps to 1 over the first fraction of total steps, times decay.

    decay multiplies the whole schedule, warmup included (a recipe's decay is 1 until it
    starts, or its own factor caps it at 1 before then)."""
    steps = warmup_steps(fraction, total)
    return lambda s: min(1, (s + 1) / steps) * decay(s)


def warmup_cosine(fraction: float, total: int) -> Schedule:
    """Linear warmup, then cosine decay to zero (Goyal et al. 2017; Loshchilov and Hutter 2017)."""
    return warmup(fraction, total, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))


def warmup_linear(fraction: float, total: int) -> Schedule:
    """Linear warmup, then linear decay from 1 at its end to 0 at total steps (BERT's)."""
    steps = warmup_steps(fraction, total)
    return warmup(fraction, total, lambda s: min(1, max(0.0, (total - s) / max(1, total - steps))))


def warmup_rsqrt(fraction: float, total: int) -> Schedule:
    """Linear warmup, then decay with the inverse square root of the step (the Transformer's,
    Vaswani et al. 2017): both 1 where the warmup ends."""
    steps = warmup_steps(fraction, total)
    return warmup(fraction, total, lambda s: min(1, math.sqrt(steps / (s + 1))))


def step_decay(milestones: Sequence[int], gamma: float) -> Schedule:
    """gamma to the power of the milestones passed: x gamma at each milestone step."""
    return lambda s: gamma ** sum(s >= m for m in milestones)
