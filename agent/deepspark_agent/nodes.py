"""The nodes of one evaluation on a shared filesystem (a Slurm job's agents, one per node).

    <evaluation>/nodes/job-<id>/node1.json          each node's marker: it sees the directory
    <evaluation>/nodes/job-<id>/node1/01-.../speed-1x-2n/   a helper node's share of a run

Node 0 checks at start that every node wrote its marker, or stops naming the node that
cannot see the directory. A helper node records its share of each multi-node run in a
folder of its own for this job (node 0 removes cut-off runs of its own run set, and a
helper of a later job must not find stale records); node 0 gathers each helper's telemetry
into the run's directory (`telemetry-node<R>.jsonl`) before it writes the run's run.json.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

from deepspark_agent.slurm import Place
from deepspark_core.errors import DeepSparkError
from deepspark_core.files import write_atomic
from deepspark_core.results import NODE_TELEMETRY, RUN_FILE, TELEMETRY_FILE, RunRecord, read_model

JOIN_S = 120.0  # for every node's agent to start and write its marker
GATHER_S = 60.0  # for a helper's record of a run that ended on node 0
POLL_S = 0.5
log = logging.getLogger("deepspark_agent")


class SharedDirError(DeepSparkError):
    """A node that cannot see the evaluation's directory."""


def job_dir(root: Path, job_id: str) -> Path:
    """This job's folder of the nodes' markers and helper run sets."""
    return root / "nodes" / f"job-{job_id}"


def helper_set(peers: Path, rank: int, run_set: str) -> Path:
    """Where helper node `rank` records its share of run set `run_set`."""
    return peers / f"node{rank}" / run_set


def join(root: Path, place: Place, timeout_s: float = JOIN_S) -> Path:
    """Write this node's marker; on node 0 wait for every node's. This job's folder."""
    who = f"node {place.node_rank} ({place.host})"
    if not wait_for(root.is_dir, timeout_s):  # node 0 (or `up --executor slurm`) makes it
        raise SharedDirError(
            f"{who}: {root} does not exist here: the evaluation directory must be on a "
            "filesystem every node shares"
        )
    peers = job_dir(root, place.job_id)
    peers.mkdir(parents=True, exist_ok=True)
    marker = {"host": socket.gethostname(), "slurm_host": place.host}
    write_atomic(peers / f"node{place.node_rank}.json", json.dumps(marker).encode())
    if place.node_rank == 0:
        for rank in range(1, place.nnodes):
            if not wait_for((peers / f"node{rank}.json").is_file, timeout_s):
                raise SharedDirError(
                    f"node {rank} ({place.hosts[rank]}) cannot see {root}: no marker from it "
                    f"in {timeout_s:g} s (the evaluation directory must be on a filesystem "
                    "every node shares)"
                )
    return peers


def gather(run_dir: Path, peers: Path, nnodes: int, own_offset_ns: int) -> dict[int, int]:
    """Each helper node's telemetry of the run that just ended on node 0, copied beside node
    0's; per node, the ns that put its times on node 0's clock (through the wall clock)."""
    clocks = {}
    for rank in range(1, nnodes):
        share = helper_set(peers, rank, run_dir.parent.name) / run_dir.name
        if not wait_for((share / RUN_FILE).is_file, GATHER_S):
            log.warning("%s: node %d recorded no share in %g s", run_dir.name, rank, GATHER_S)
            continue
        record = read_model(share / RUN_FILE, RunRecord)
        if (share / TELEMETRY_FILE).is_file():
            shutil.copyfile(share / TELEMETRY_FILE, run_dir / NODE_TELEMETRY.format(rank=rank))
        clocks[rank] = own_offset_ns - record.mono_offset_ns
    return clocks


def wait_for(ready: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True
