"""Throughput of a workload with the telemetry sampler running beside it vs without.

Both arms start train.py the same way; the second also runs the agent's Recorder at 10 Hz
on the workload's process with the node power sources that answer here (the samplers the
process runtime uses: RAPL at 10 Hz and IPMI at 1 Hz in threads of their own, where present).
Prints the throughput ratio, the samplers' CPU cost per second of sampling, and the achieved
sample rate.

    .venv/bin/python benchmarks/telemetry_overhead.py [--rounds 4] [--batch-size 256]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from abba import compare, parse_args

from deepspark_agent.telemetry import ProcessTreeSampler, Recorder
from deepspark_agent.telemetry.node import NodePowerChoice, node_samplers
from deepspark_agent.workloads import find_workload
from deepspark_core.contract import RunSpec
from deepspark_core.series import load_series, sample_rate_hz

workload = find_workload("resnet50")
node_sources, node = node_samplers(NodePowerChoice())
costs: list[float] = []  # sampler CPU seconds per second of sampling
rates: list[float] = []


def start(spec: RunSpec, out: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **spec.env(out), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = str(workload.path.parent)
    log = (out / "stdout.log").open("wb")
    return subprocess.Popen([sys.executable, "train.py"], cwd=workload.path, env=env,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip


def without(spec: RunSpec, out: Path) -> None:
    assert start(spec, out).wait() == 0


def sampled(spec: RunSpec, out: Path) -> None:
    proc = start(spec, out)
    began = time.monotonic()
    samplers = [ProcessTreeSampler(proc.pid), *node()]
    with Recorder(samplers, out / "telemetry.jsonl") as recorder:
        assert proc.wait() == 0
    costs.append(recorder.cpu_s / (time.monotonic() - began))
    _, series = load_series(out / "telemetry.jsonl", "mem_used_bytes")
    rates.append(sample_rate_hz(next(iter(series.values()))))


if __name__ == "__main__":
    compare(("without", without), ("sampled", sampled), parse_args(__doc__.splitlines()[0]))
    print(f"sampler CPU: {statistics.median(costs) * 1e3:.2f} ms per second of sampling "
          f"({statistics.median(costs):.2%} of one core)")  # fmt: skip
    print(f"achieved sample rate: {statistics.median(rates):.2f} Hz (asked 10)")
    print(f"node power: {node_sources}")
