"""How the agent's runtimes start a workload's ranks: torchrun, or the workload's own launcher."""

import sys
from pathlib import Path

import pytest

from deepspark_agent.runtime.base import Cluster, Launch, LaunchError, argv
from deepspark_agent.workloads import find_workload
from deepspark_core.contract import RunSpec


def launch(name: str, nproc: int, cluster: Cluster | None = None) -> Launch:
    spec = RunSpec(model=name, config="mini", mode="speed", seed=0, nproc=nproc)
    return Launch(find_workload(name), spec, Path("/runs/r1"), cluster=cluster)


def test_one_rank_runs_the_entrypoint() -> None:
    assert argv(launch("resnet50_paddle", 1), sys.executable) == [sys.executable, "train.py"]


def test_torch_workloads_run_under_torchrun() -> None:
    command = argv(launch("resnet50", 2), "python3")
    assert command[:3] == ["python3", "-m", "torch.distributed.run"]
    assert command[-3:] == ["--nproc-per-node", "2", "train.py"]


def test_a_workload_names_its_own_launcher() -> None:
    """workload.toml's launcher (paddle's), {nproc} and {out_dir} filled in: the run's
    directory as the workload sees it, /ds/out in a container."""
    command = argv(launch("resnet50_paddle", 4), "python3", Path("/ds/out"))
    assert command == [
        "python3", "-m", "paddle.distributed.launch", "--nproc_per_node", "4",
        "--max_restart", "0", "--log_dir", "/ds/out/launch", "train.py",
    ]  # fmt: skip
    assert "/runs/r1/launch" in argv(launch("resnet50_paddle", 2), "python")  # process runtime


def test_own_launcher_runs_on_one_node_only() -> None:
    with pytest.raises(LaunchError, match="one node only"):
        argv(launch("bert_large_paddle", 2, Cluster(2, 0, "10.0.0.1")), "python3")
