"""`up --executor slurm` on a real Slurm cluster (scripts/slurm-env: slurmctld and two
slurmd on this host): one agent per node from Slurm's environment, every node's telemetry in
the signed result, a cancelled job resumed without rerunning what was recorded."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepspark_agent import evaluations, nodes, slurm
from deepspark_agent.cli import up
from deepspark_agent.evaluate import Evaluated
from deepspark_agent.evaluations import EVALUATION_FILE
from deepspark_agent.slurm import JobOptions, Place
from deepspark_agent.suites import load_suite
from deepspark_core.results import RUN_FILE, Result
from two_nodes import SUITE, agent


def test_two_nodes_cancelled_then_resumed(slurm_cluster, tmp_path: Path) -> None:
    """The 2-node evaluation is cancelled (scancel) once node 0 recorded its 1-node run, in
    the middle of the 2-node run; `--resume` finishes it in a second job, keeping that run."""
    (tmp_path / "pair.toml").write_text(SUITE)
    out = tmp_path / "runs"
    common = ("up", "--executor", "slurm", "--nodes", "2", "--suite", str(tmp_path / "pair.toml"),
              "--runtime", "process", "--out", str(out), "--json")  # fmt: skip
    log = tmp_path / "first.err"
    with log.open("w") as err_file:  # read as it grows: the job's id, its states
        first = subprocess.Popen(agent(*common), stdout=subprocess.DEVNULL, stderr=err_file)
    try:
        deadline = time.monotonic() + 600
        while not (found := list(out.glob("pair-*/01-resnet50-mini/speed-1x/" + RUN_FILE))):
            assert first.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        job_id = re.search(r"submitted: job (\d+)", log.read_text()).group(1)
        subprocess.run(["scancel", job_id], check=True)
        first.wait(timeout=120)
    finally:
        first.kill()
    err = log.read_text()
    (kept,) = found
    root = kept.parents[2]
    (script,) = (root / "slurm").glob("job-1.sbatch")
    assert first.returncode == 130, err
    assert f"job {job_id} CANCELLED: finished runs are recorded in {root}" in err
    assert f"job {job_id}: RUNNING on n[1-2]" in err  # followed: its state and nodes
    recorded = kept.read_bytes()
    assert "--nodes=2" in script.read_text() and "srun --ntasks-per-node=1" in script.read_text()

    second = subprocess.run(agent(*common, "--resume"), capture_output=True, text=True,
                            timeout=900)  # fmt: skip
    assert second.returncode == 0, second.stderr
    (result,) = (Result.model_validate(r) for r in json.loads(second.stdout))
    one, two = result.runs
    assert (one.label, one.nnodes, two.label, two.nnodes) == ("speed-1x", 1, "speed-1x-2n", 2)
    assert all(r.status == "success" for r in result.runs)
    linearity = result.dimensions.linearity
    assert linearity.nodes == 2 and linearity.card is None  # one device per node
    assert linearity.node == pytest.approx(two.speed.value / (2 * one.speed.value))

    run_set = root / "01-resnet50-mini"
    assert kept.read_bytes() == recorded  # the 1-node run was not run again
    assert "speed-1x: recorded before, kept" in (run_set / "agent.log").read_text()
    # Both nodes ran the 2-node run, each found by its own agent; node 0 gathered node 1's.
    (job2,) = [d for d in (root / "nodes").iterdir() if d.name != f"job-{job_id}"]
    hosts = {json.loads((job2 / f"node{r}.json").read_text())["slurm_host"] for r in (0, 1)}
    assert hosts == {"n1", "n2"}
    share = job2 / "node1" / run_set.name / "speed-1x-2n"
    assert json.loads((share / RUN_FILE).read_text())["exit_code"] == 0
    assert [n.node for n in two.nodes] == [0, 1] and all(n.memory for n in two.nodes)
    assert two.memory.devices == 2  # every node's devices in the run's figure
    # The signed statement holds both nodes' telemetry and both jobs' scripts; it verifies.
    envelope = json.loads((run_set / "statement.dsse.json").read_text())
    subjects = {s["name"] for s in json.loads(base64.b64decode(envelope["payload"]))["subject"]}
    assert {"speed-1x-2n/telemetry.jsonl", "speed-1x-2n/telemetry-node1.jsonl"} <= subjects
    assert {"slurm/job-1.sbatch", "slurm/job-2.sbatch"} <= subjects
    verified = subprocess.run(agent("verify", str(run_set / "statement.dsse.json")),
                              capture_output=True, text=True)  # fmt: skip
    assert verified.returncode == 0 and "verified: signed by" in verified.stdout, verified.stderr


def test_a_refused_job_is_one_line(slurm_cluster, tmp_path: Path) -> None:
    code = subprocess.run(
        agent("up", "--executor", "slurm", "--partition", "nosuch", "--out", str(tmp_path)),
        capture_output=True, text=True,
    )  # fmt: skip
    assert code.returncode == 1
    assert code.stderr.startswith("error: sbatch --parsable") and "partition" in code.stderr
    assert code.stderr.count("\n") == 1, code.stderr
    assert not list(tmp_path.glob("smoke-*")), "the refused job's evaluation was left"


def test_a_job_sbatch_refuses_leaves_nothing(tmp_path: Path) -> None:
    """No cluster needed: an sbatch that refuses every job, as one would a partition it does
    not have. A new evaluation's directory goes with its script; a resumed evaluation keeps
    everything but the refused script (node 0 would sign it with the run sets)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: invalid partition' >&2\nexit 1\n")
    (fake / "sbatch").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    out = tmp_path / "runs"

    def refused(*more: str) -> str:
        code = subprocess.run(agent("up", "--executor", "slurm", "--out", str(out), *more),
                              capture_output=True, text=True, env=env)  # fmt: skip
        assert code.returncode == 1 and code.stderr.count("\n") == 1, code.stderr
        assert code.stderr.startswith("error: sbatch --parsable") and "partition" in code.stderr
        return code.stderr

    assert "nothing is kept" in refused()
    assert not out.exists() or not any(out.iterdir())

    root, _ = evaluations.start(out, load_suite("smoke"), node_devices=1)
    (root / "slurm").mkdir()
    (root / "slurm" / "job-1.sbatch").write_text("#!/bin/bash\n")  # the job that ran before
    assert "job-2.sbatch" in refused("--resume")
    assert sorted(p.name for p in root.iterdir()) == [EVALUATION_FILE, "slurm"]
    assert [p.name for p in (root / "slurm").iterdir()] == ["job-1.sbatch"]


def test_the_seed_table_is_printed_once_by_the_up_that_follows_the_job(
    signed: tuple[Path, Result], cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Node 0's agent in the job (--evaluation) prints no seed table: the job's output is
    relayed by the `up` that submitted it, which prints the table itself."""
    run_set, result = signed
    done = Evaluated(tmp_path / "pair-job7", [(result, run_set)], 0)
    monkeypatch.setattr(up, "evaluate", lambda request, output: done)
    monkeypatch.setattr(up, "submit_evaluation", lambda request, job, output: done)
    code, in_job, _ = cli("up", "--evaluation", str(done.root))
    assert code == 0 and done.root.name not in in_job
    code, follower, _ = cli("up", "--executor", "slurm")
    assert code == 0 and follower.count(done.root.name) == 1  # the seed table's title


def test_an_agent_under_srun_takes_its_place_from_slurm(slurm_cluster) -> None:
    probe = "from deepspark_agent import slurm; p = slurm.here(); print(p.node_rank, p.nnodes, " \
            "','.join(p.hosts), p.master_port, slurm.node_addr(p.hosts[0]))"  # fmt: skip
    done = subprocess.run(["srun", "-N2", "--ntasks-per-node=1", sys.executable, "-c", probe],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = sorted(done.stdout.splitlines())
    assert [line.split()[:3] for line in lines] == [["0", "2", "n1,n2"], ["1", "2", "n1,n2"]]
    assert lines[0].split()[3] == lines[1].split()[3]  # one rendezvous port for the job
    assert lines[0].split()[4] == "127.0.0.1"  # n1's NodeAddr, where node 0 listens
    assert slurm.here({}) is None  # not in a job step: a local agent


def test_node_0_names_the_node_that_cannot_see_the_evaluation(tmp_path: Path) -> None:
    place = Place("7", node_rank=0, nnodes=3, hosts=("n1", "n2", "n3"))
    (tmp_path / "nodes" / "job-7").mkdir(parents=True)
    (tmp_path / "nodes" / "job-7" / "node1.json").write_text("{}")  # n2 checked in; n3 not
    with pytest.raises(nodes.SharedDirError, match=r"^node 2 \(n3\) cannot see "):
        nodes.join(tmp_path, place, timeout_s=0.2)
    helper = Place("7", node_rank=1, nnodes=3, hosts=("n1", "n2", "n3"))
    with pytest.raises(nodes.SharedDirError, match=r"^node 1 \(n2\): .* does not exist here"):
        nodes.join(tmp_path / "elsewhere", helper, timeout_s=0.2)


def test_the_script_runs_agents_in_the_image_with_pyxis(tmp_path: Path) -> None:
    job = JobOptions(nodes=4, partition="gpu", account="lab", time="2:00:00",
                     container_image="deepspark/agent:1")  # fmt: skip
    text = slurm.script(job, "ds", tmp_path / "out", ["python", "-m", "x"], [tmp_path])
    for line in ("#SBATCH --nodes=4", "#SBATCH --partition=gpu", "#SBATCH --account=lab",
                 "#SBATCH --time=2:00:00"):  # fmt: skip
        assert line in text.splitlines()
    srun = text.splitlines()[-1]
    assert f"--container-image=deepspark/agent:1 --container-mounts={tmp_path}:{tmp_path}" in srun
    assert srun.endswith("python -m x")
