"""Shared by the benchmarks: run two arms in ABBA order and compare their measured speed.

Each arm runs ResNet50 mini in speed mode with the same contract environment and seed per
round; speed comes from each run's own events through the agent's engine. ABBA order (A B,
B A, ...) keeps slow drift of the host from favouring either arm.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from deepspark_core.contract import RunSpec
from deepspark_core.events import read_events
from deepspark_core.metrics import speed

Arm = Callable[[RunSpec, Path], None]  # runs spec with DS_OUT_DIR = the given directory


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256)
    return parser.parse_args()


def compare(
    baseline: tuple[str, Arm], candidate: tuple[str, Arm], args: argparse.Namespace
) -> float:
    """Median speed of candidate over baseline's; prints each round and the ratio."""
    arms = dict((baseline, candidate))
    speeds: dict[str, list[float]] = {name: [] for name in arms}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            spec = RunSpec(model="resnet50", config="mini", mode="speed", seed=i,
                           batch_size=args.batch_size, max_seconds=600)  # fmt: skip
            order = list(arms) if i % 2 == 0 else list(reversed(arms))
            for name in order:
                out = Path(tmp, f"{name}-{i}")
                out.mkdir()
                arms[name](spec, out)
                windows = read_events(out / "mllog.log").windows()[spec.warmup_windows :]
                speeds[name].append(speed(windows).value)
            print(f"round {i + 1}: " + ", ".join(f"{n} {speeds[n][-1]:.1f}/s" for n in order))
    medians = {name: statistics.median(s) for name, s in speeds.items()}
    # Each round's pair ran back to back, so its ratio cancels the host's slow drift.
    paired = statistics.median(
        c / b for c, b in zip(speeds[candidate[0]], speeds[baseline[0]], strict=True)
    )
    print(", ".join(f"median {n} {m:.1f}/s" for n, m in medians.items()))
    print(f"{candidate[0]}/{baseline[0]} throughput ratio: {paired:.3f} (median of paired rounds)")
    return paired
