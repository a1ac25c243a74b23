"""What every runtime is given and what it reports back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from deepspark_agent.telemetry.node import NodeFactory
from deepspark_agent.telemetry.recorder import SamplerFactory
from deepspark_agent.workloads import Workload
from deepspark_core.contract import RunSpec
from deepspark_core.errors import DeepSparkError
from deepspark_core.results import ImageRef


class LaunchError(DeepSparkError):
    """A run that cannot be started as asked."""


@dataclass(frozen=True)
class Cluster:
    """This node's place in a multi-node run: torchrun's static rendezvous, which keeps global
    rank 0 (the rank that logs the contract's events) on node 0, whose agent reports."""

    nnodes: int
    node_rank: int
    master_addr: str  # node 0's address, where rank 0's store listens
    master_port: int = 29500
    # Nodes on a shared filesystem (a Slurm job): the folder of the helper nodes' shares of
    # each run (nodes.job_dir), whose telemetry node 0 gathers; None: each node its own.
    peers: Path | None = None

    def torchrun_args(self, timeout_s: float) -> list[str]:
        return [
            "--nnodes", str(self.nnodes), "--node-rank", str(self.node_rank),
            "--master-addr", self.master_addr, "--master-port", str(self.master_port),
            # How long the nodes wait for each other: the run's own budget, not torch's 600 s.
            "--rdzv-conf", f"timeout={max(1, int(timeout_s))}",
        ]  # fmt: skip


@dataclass(frozen=True)
class Launch:
    workload: Workload
    spec: RunSpec
    out_dir: Path  # the run's directory, mounted writable as DS_OUT_DIR
    data_dir: Path | None = None
    cluster: Cluster | None = None  # None: a run on this node alone
    image: str | None = None  # a vendor's image, run instead of the workload's own
    checkpoint: Path | None = None  # the weights an infer run loads (DS_CHECKPOINT)

    def __post_init__(self) -> None:
        # Absolute: a workload starts in its own folder, not in the agent's working directory.
        object.__setattr__(self, "out_dir", self.out_dir.resolve())
        for name in ("data_dir", "checkpoint"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, getattr(self, name).resolve())


@dataclass(frozen=True)
class Outcome:
    exit_code: int | None  # None: the workload never started
    wall_s: float
    error: str | None = None  # why the runtime, not the workload, ended the run
    timed_out: bool = False
    image: ImageRef | None = None  # what a container runtime ran


def argv(launch: Launch, python: str, out_dir: Path | None = None) -> list[str]:
    """The workload's command line, through torchrun when it spans several ranks or nodes,
    or through the launcher its workload.toml names (paddle.distributed.launch).

    `python` replaces a "python" entrypoint: the agent's interpreter for a local process,
    the image's `python3` in a container. out_dir: the run's directory as the workload sees
    it (default launch.out_dir), for a launcher's `{out_dir}`.
    """
    workload, nproc, cluster = launch.workload, launch.spec.nproc, launch.cluster
    program, *args = workload.entrypoint
    if program not in ("python", "python3"):
        if nproc > 1 or cluster:
            raise LaunchError(f"{workload.name}: several ranks need a python entrypoint")
        return [program, *args]
    if nproc == 1 and not cluster:
        return [python, *args]
    if workload.launcher is not None:
        if cluster:
            raise LaunchError(f"{workload.name}: its own launcher runs on one node only")
        fill = {"nproc": str(nproc), "out_dir": str(out_dir or launch.out_dir)}
        return [python, *(arg.format(**fill) for arg in workload.launcher), *args]
    # --standalone: a local rendezvous on a free port, so parallel runs never collide.
    rendezvous = cluster.torchrun_args(launch.spec.max_seconds) if cluster else ["--standalone"]
    return [
        python, "-m", "torch.distributed.run", *rendezvous, "--nproc-per-node", str(nproc),
        *args,
    ]  # fmt: skip


class Runtime(Protocol):
    name: str
    accelerators: SamplerFactory  # the accelerator telemetry beside each run
    node: NodeFactory  # the node's power sources beside each run

    def run(self, launch: Launch, on_tick: Callable[[], None] = ...) -> Outcome:
        """Run to completion or to the spec's deadline; never leave anything running."""
        ...

    def reap(self, run_dir: Path) -> None:
        """Stop whatever a killed agent left running for run_dir (before it is run again)."""
        ...
