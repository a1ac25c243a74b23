"""Two agents as two nodes of one evaluation: each runs its container under torchrun's
rendezvous on a shared docker network; node 0 computes node linearity and reports."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from deepspark_agent import images
from deepspark_agent.workloads import find_workload
from deepspark_core.results import RUN_FILE, Result, RunRecord
from two_nodes import SUITE, agent


@pytest.mark.docker
def test_two_nodes_on_one_docker_network(
    docker_client, base_image, leftovers, tmp_path: Path
) -> None:
    image = images.build(docker_client, find_workload("resnet50"), base_image)
    (tmp_path / "pair.toml").write_text(SUITE)
    tag = uuid.uuid4().hex[:8]
    network = docker_client.networks.create(f"deepspark-test-{tag}", driver="bridge")
    common = (
        "up", "--suite", str(tmp_path / "pair.toml"), "--runtime", "docker", "--json",
        "--nnodes", "2", "--master-addr", f"node0-{tag}", "--master-port", "29400",
        "--network", network.name,
    )  # fmt: skip
    # Node 1 first: its container waits in the rendezvous while node 0 runs its 1-node speed.
    helper = subprocess.Popen(
        agent(*common, "--node-rank", "1", "--out", str(tmp_path / "n1")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        main = subprocess.run(
            agent(*common, "--node-rank", "0", "--out", str(tmp_path / "n0")),
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        _, helper_err = helper.communicate(timeout=120)
    finally:
        helper.kill()
        network.remove()
    assert main.returncode == 0, main.stderr
    assert helper.returncode == 0, helper_err
    assert "node 1: resnet50 speed-1x-2n: exit 0" in helper_err

    (result,) = (Result.model_validate(r) for r in json.loads(main.stdout))
    one, two = result.runs
    assert (one.label, one.nnodes, two.label, two.nnodes) == ("speed-1x", 1, "speed-1x-2n", 2)
    assert all(r.status == "success" and r.image.id == image.id for r in result.runs)
    linearity = result.dimensions.linearity
    assert linearity.nodes == 2 and linearity.card is None  # one device per node
    assert linearity.node == pytest.approx(two.speed.value / (2 * one.speed.value))
    # The helper node ran only its share of the multi-node run; its container is gone.
    (run,) = (tmp_path / "n1").glob("pair-*/01-resnet50-mini/*/" + RUN_FILE)
    assert run.parent.name == "speed-1x-2n"
    assert RunRecord.model_validate_json(run.read_text()).exit_code == 0
    assert leftovers() == []


def test_multi_node_flags_are_checked_in_one_line(cli, sleeper, tmp_path: Path) -> None:
    cases = {
        ("--nnodes", "2"): "--master-addr",
        ("--nnodes", "2", "--node-rank", "2", "--master-addr", "a"): "0..1",
        ("--node-rank", "1"): "0..0",
    }
    for args, message in cases.items():
        code, _, err = cli("up", "--runtime", "process", "--out", str(tmp_path), *args)
        assert code == 1 and err.startswith("error:") and message in err, (args, err)
        assert err.count("\n") == 1, err
