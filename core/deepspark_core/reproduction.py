"""A result's headline figures and a reproduction's ratios to the result it reproduces.

The collector stores the headline figures as columns (`figures`); `up --reproduce` sets a
reproduction beside the published result with a ratio per dimension (`ratios`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from deepspark_core.results import Result

# Each dimension's headline figure, and which way is better.
BETTER: dict[str, Literal["higher", "lower"]] = {
    "speed": "higher", "accuracy": "higher", "power": "lower", "memory": "lower",
    "linearity": "higher", "stability": "higher",
}  # fmt: skip


def figures(result: Result) -> dict[str, float | None]:
    """The six dimensions' headline figures: speed, accuracy, power and memory summed over the
    devices, stability's score, card linearity (node linearity is in the result); None: N/A."""
    d = result.dimensions
    return {
        "speed": d.speed.value if d.speed else None,
        "accuracy": d.accuracy.value if d.accuracy else None,
        "power": sum(d.power.mean_w) if d.power else None,
        "memory": sum(d.memory.mean_gb) if d.memory else None,
        "stability": d.stability.score if d.stability else None,
        "linearity": d.linearity.card if d.linearity else None,
    }


@dataclass(frozen=True)
class Ratio:
    """One dimension of a reproduction beside the published result: here / published."""

    dimension: str
    published: float | None
    here: float | None
    better: Literal["higher", "lower"]

    @property
    def ratio(self) -> float | None:
        """None (N/A) when either side has no figure or the published one is 0."""
        if self.here is None or not self.published:
            return None
        return self.here / self.published


def ratios(published: Result, here: Result) -> list[Ratio]:
    """Per dimension, the reproduction's figure over the published one."""
    a, b = figures(published), figures(here)
    return [Ratio(name, a[name], b[name], better) for name, better in BETTER.items()]
