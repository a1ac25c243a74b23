"""What every runtime is given and what it reports back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deepspark_agent.contract import RunSpec
from deepspark_agent.workloads import Workload


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
