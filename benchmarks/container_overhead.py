"""Throughput of a workload image run by the agent's Docker runtime vs a plain `docker run`.

Needs the image: `deepspark-agent images build resnet50` (after scripts/build-base-image).

    .venv/bin/python benchmarks/container_overhead.py [--rounds 4] [--batch-size 256]
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from abba import compare, parse_args

from deepspark_agent.images import engine
from deepspark_agent.runtime.base import Launch
from deepspark_agent.runtime.docker import OUT_MOUNT, DockerRuntime
from deepspark_agent.workloads import find_workload
from deepspark_core.contract import RunSpec

workload = find_workload("resnet50")
runtime = DockerRuntime(engine())


def plain(spec: RunSpec, out: Path) -> None:
    env = [arg for k, v in spec.env(OUT_MOUNT).items() for arg in ("-e", f"{k}={v}")]
    with (out / "stdout.log").open("wb") as log:
        subprocess.run(["docker", "run", "--rm", *env, "-v", f"{out}:{OUT_MOUNT}", workload.image],
                       stdout=log, stderr=subprocess.STDOUT, check=True)  # fmt: skip


def agent(spec: RunSpec, out: Path) -> None:
    outcome = runtime.run(Launch(workload, spec, out))
    assert outcome.exit_code == 0, outcome


if __name__ == "__main__":
    compare(("docker-run", plain), ("agent", agent), parse_args(__doc__.splitlines()[0]))
