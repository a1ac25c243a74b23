"""Throughput of a workload run by the agent (process runtime, 10 Hz telemetry) vs run bare.

Both arms run ResNet50 mini in speed mode with the same contract environment and seeds,
alternating so that drift on the host hits both; speed is computed by the same engine from
each run's own events. Prints the ratio agent / bare (1.0: no overhead).

    .venv/bin/python benchmarks/agent_overhead.py [--rounds 4] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from deepspark_agent.contract import RunSpec
from deepspark_agent.events import read_events
from deepspark_agent.metrics import speed
from deepspark_agent.runtime.base import Launch
from deepspark_agent.runtime.process import ProcessRuntime
from deepspark_agent.workloads import find_workload


def measured_speed(out: Path, warmup: int) -> float:
    return speed(read_events(out / "mllog.log").windows()[warmup:]).value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    workload = find_workload("resnet50")
    runtime = ProcessRuntime()

    def bare(spec: RunSpec, out: Path) -> None:
        env = {**os.environ, **spec.env(out), "PYTHONPATH": str(workload.path.parent)}
        with (out / "stdout.log").open("wb") as log:
            subprocess.run([sys.executable, "train.py"], cwd=workload.path, env=env,
                           stdout=log, stderr=subprocess.STDOUT, check=True)  # fmt: skip

    def agent(spec: RunSpec, out: Path) -> None:
        outcome = runtime.run(Launch(workload, spec, out))
        assert outcome.exit_code == 0, outcome

    speeds: dict[str, list[float]] = {"bare": [], "agent": []}
    arms = {"bare": bare, "agent": agent}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            spec = RunSpec(model="resnet50", config="mini", mode="speed", seed=i,
                           batch_size=args.batch_size, max_seconds=600)  # fmt: skip
            order = ["bare", "agent"] if i % 2 == 0 else ["agent", "bare"]  # ABBA: no order bias
            for arm in order:
                out = Path(tmp, f"{arm}-{i}")
                out.mkdir()
                arms[arm](spec, out)
                speeds[arm].append(measured_speed(out, spec.warmup_windows))
            print(f"round {i + 1}: " + ", ".join(f"{a} {speeds[a][-1]:.1f}/s" for a in order))
    bare_s, agent_s = statistics.median(speeds["bare"]), statistics.median(speeds["agent"])
    ratio = agent_s / bare_s
    print(f"median bare {bare_s:.1f}/s, agent {agent_s:.1f}/s")
    print(f"agent/bare throughput ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
