"""What the two-node tests share (Docker's two containers, Slurm's two nodes): a suite of one
mini workload, speed at one node and at two, and the agent as a subprocess."""

from __future__ import annotations

import sys

SUITE = """name = "pair"
[[workloads]]
model = "resnet50"
devices = [1]
batch_size = 16
windows = 3
stability_runs = 0
budget_s = 900
"""


def agent(*args: str) -> list[str]:
    """The agent's command line, with this interpreter."""
    return [sys.executable, "-m", "deepspark_agent", *args]
