"""Throughput of a workload run by the agent (process runtime, 10 Hz telemetry) vs run bare.

.venv/bin/python benchmarks/agent_overhead.py [--rounds 4] [--batch-size 256]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from abba import compare, parse_args

from deepspark_agent.runtime.base import Launch
from deepspark_agent.runtime.process import ProcessRuntime
from deepspark_agent.workloads import find_workload
from deepspark_core.contract import RunSpec

workload = find_workload("resnet50")


def bare(spec: RunSpec, out: Path) -> None:
    env = {**os.environ, **spec.env(out), "PYTHONPATH": str(workload.path.parent)}
    with (out / "stdout.log").open("wb") as log:
        subprocess.run([sys.executable, "train.py"], cwd=workload.path, env=env,
                       stdout=log, stderr=subprocess.STDOUT, check=True)  # fmt: skip


def agent(spec: RunSpec, out: Path) -> None:
    outcome = ProcessRuntime().run(Launch(workload, spec, out))
    assert outcome.exit_code == 0, outcome


if __name__ == "__main__":
    compare(("bare", bare), ("agent", agent), parse_args(__doc__.splitlines()[0]))
