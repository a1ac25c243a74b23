"""What every runtime is given and what it reports back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from deepspark_agent.contract import RunSpec
from deepspark_agent.results import ImageRef
from deepspark_agent.telemetry import Sampler
from deepspark_agent.workloads import Workload

# Accelerator telemetry for a run, given the workload's root process id on the host.
SamplerFactory = Callable[[int], list[Sampler]]


def no_samplers(pid: int) -> list[Sampler]:
    return []


class LaunchError(RuntimeError):
    """A run that cannot be started as asked."""


@dataclass(frozen=True)
class Launch:
    workload: Workload
    spec: RunSpec
    out_dir: Path  # the run's directory, mounted writable as DS_OUT_DIR
    data_dir: Path | None = None


@dataclass(frozen=True)
class Outcome:
    exit_code: int | None  # None: the workload never started
    wall_s: float
    error: str | None = None  # why the runtime, not the workload, ended the run
    timed_out: bool = False
    image: ImageRef | None = None  # what a container runtime ran


def argv(workload: Workload, nproc: int, python: str) -> list[str]:
    """The workload's command line, through torchrun when it spans several ranks.

    `python` replaces a "python" entrypoint: the agent's interpreter for a local process,
    the image's `python3` in a container.
    """
    program, *args = workload.entrypoint
    if program not in ("python", "python3"):
        if nproc > 1:
            raise LaunchError(f"{workload.name}: several ranks need a python entrypoint")
        return [program, *args]
    if nproc == 1:
        return [python, *args]
    # --standalone: a local rendezvous on a free port, so parallel runs never collide.
    return [
        python, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
        *args,
    ]  # fmt: skip


class Runtime(Protocol):
    name: str

    def run(self, launch: Launch, on_tick: Callable[[], None] = ...) -> Outcome:
        """Run to completion or to the spec's deadline; never leave anything running."""
        ...

    def reap(self, run_dir: Path) -> None:
        """Stop whatever a killed agent left running for run_dir (before it is run again)."""
        ...
