"""Slurm: an agent's place in a job (from Slurm's environment), the sbatch script that starts
one agent per node, and the job's submission, state and cancellation (sbatch, scontrol,
scancel). Nothing here knows what an evaluation is: `batch` and `evaluate` say that."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from deepspark_core.errors import DeepSparkError

# States after which a job runs no more (Slurm's JOB_STATE names, as scontrol prints them).
ENDED = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
    "PREEMPTED", "TIMEOUT",
})  # fmt: skip
COMMAND_TIMEOUT_S = 60.0
Executor = Literal["local", "slurm"]


class SlurmError(DeepSparkError):
    """A Slurm command that is missing or refused what it was asked."""


@dataclass(frozen=True)
class Place:
    """This agent's place in a Slurm job: srun's node id, the job's node count and hosts."""

    job_id: str
    node_rank: int  # SLURM_NODEID
    nnodes: int  # SLURM_NNODES
    hosts: tuple[str, ...]  # SLURM_JOB_NODELIST expanded, node 0 first

    @property
    def host(self) -> str:
        return self.hosts[self.node_rank] if self.node_rank < len(self.hosts) else "?"

    @property
    def master_port(self) -> int:
        """A rendezvous port of this job's own, so jobs that share a node never collide."""
        return 20000 + int(re.sub(r"\D", "", self.job_id) or 0) % 10000


def here(env: Mapping[str, str] = os.environ) -> Place | None:
    """This agent's place when srun started it (a job step: SLURM_STEP_ID set); None outside
    a job step, so a batch script's own shell is not taken for node 0."""
    if "SLURM_STEP_ID" not in env or "SLURM_JOB_ID" not in env:
        return None
    try:
        rank, nnodes = int(env["SLURM_NODEID"]), int(env["SLURM_NNODES"])
        nodelist = env["SLURM_JOB_NODELIST"]
    except (KeyError, ValueError) as exc:
        raise SlurmError(f"a Slurm job step without a usable {exc}") from None
    return Place(env["SLURM_JOB_ID"], rank, nnodes, tuple(hostnames(nodelist)))


def hostnames(nodelist: str) -> list[str]:
    """A node list (n[1-2],gpu07) as host names, in Slurm's order."""
    return _slurm("scontrol", "show", "hostnames", nodelist).split()


def node_addr(host: str) -> str:
    """The address Slurm reaches a node at (its NodeAddr), where node 0's rendezvous listens."""
    found = re.search(r"\bNodeAddr=(\S+)", _slurm("scontrol", "show", "node", "-o", host))
    return found.group(1) if found else host


@dataclass(frozen=True)
class JobOptions:
    """What `up --executor slurm` asks of the cluster."""

    nodes: int = 1
    partition: str | None = None
    account: str | None = None
    time: str | None = None  # Slurm's --time: minutes, or [D-]HH:MM:SS
    container_image: str | None = None  # pyxis: the agents run in this image


def script(
    job: JobOptions, name: str, output: Path, agent: Sequence[str], pyxis_mounts: Sequence[Path]
) -> str:
    """The sbatch script: one agent per node under srun, each finding its place in Slurm's
    environment. pyxis_mounts: with a container image, the folders the agents must see in it."""
    directives = [
        f"--job-name={name}", f"--nodes={job.nodes}", "--ntasks-per-node=1",
        f"--output={output}", "--export=ALL", f"--chdir={Path.cwd()}",
    ]  # fmt: skip
    asked = {"partition": job.partition, "account": job.account, "time": job.time}
    directives += [f"--{option}={value}" for option, value in asked.items() if value]
    # --kill-on-bad-exit: an agent that fails (a node that cannot see the evaluation) stops
    # the others rather than leaving them waiting for it.
    srun = ["srun", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "--label"]
    if job.container_image:
        mounts = ",".join(f"{p}:{p}" for p in pyxis_mounts)
        srun += [f"--container-image={job.container_image}", f"--container-mounts={mounts}"]
    lines = [
        "#!/bin/bash",
        "# DeepSpark Bench: one agent per node; each takes its node rank, the node count and",
        "# node 0's address from Slurm's environment (deepspark-agent up --executor slurm).",
        *(f"#SBATCH {shlex.quote(d)}" for d in directives),
        "set -euo pipefail",
        "export PYTHONUNBUFFERED=1  # the agents' lines reach the job's output as they are said",
        shlex.join([*srun, *agent]),
    ]
    return "\n".join(lines) + "\n"


def has_pyxis() -> bool:
    """Whether this site's srun runs containers (the pyxis plugin adds --container-image)."""
    try:
        return "--container-image" in _slurm("srun", "--help")
    except SlurmError:
        return False


def submit(path: Path) -> str:
    """Submit a batch script; the job's id."""
    return _slurm("sbatch", "--parsable", str(path)).strip().split(";")[0]


@dataclass(frozen=True)
class JobState:
    state: str  # PENDING, RUNNING, COMPLETED, CANCELLED, ...
    nodes: str  # the node list once it runs ("" before)
    reason: str  # why it waits, or "None"
    exit_code: str  # the batch script's, "code:signal"

    @property
    def ended(self) -> bool:
        return self.state in ENDED


def job_state(job_id: str) -> JobState:
    """The job as slurmctld sees it now (it keeps ended jobs a few minutes: MinJobAge)."""
    text = _slurm("scontrol", "show", "job", "-o", job_id)
    fields = dict(re.findall(r"(\w+)=(\S*)", text))
    nodes = fields.get("NodeList", "")
    return JobState(
        state=fields.get("JobState", "UNKNOWN"), nodes="" if nodes == "(null)" else nodes,
        reason=fields.get("Reason", "None"), exit_code=fields.get("ExitCode", "?"),
    )  # fmt: skip


def cancel(job_id: str) -> None:
    _slurm("scancel", job_id)


def _slurm(*argv: str) -> str:
    """A Slurm command's output; SlurmError, one line, when it is missing or fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]} not found: Slurm's client commands must be on PATH") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{argv[0]}: no answer in {COMMAND_TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise SlurmError(f"{shlex.join(argv[:3])}: {why}")
    return done.stdout
