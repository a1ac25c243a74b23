"""Every workload in the catalog builds into its image and runs a speed-mode run in a container."""

import json

import pytest

from deepspark_agent import images
from deepspark_agent.workloads import list_workloads
from deepspark_core.results import Result

pytestmark = pytest.mark.docker
WORKLOADS = [w.name for w in list_workloads()]


def test_models_list_shows_every_workload_with_its_metric_and_target(cli) -> None:
    code, stdout, stderr = cli("models", "list", "--json")
    assert code == 0, stderr
    listed = {m["name"]: m for m in json.loads(stdout)}
    assert sorted(listed) == sorted(WORKLOADS)
    for workload in list_workloads():
        row = listed[workload.name]
        assert row["task"] == workload.task and row["quality"]["metric"]
        assert row["configs"]["mini"]["target"] == workload.configs["mini"].target


@pytest.mark.parametrize("name", WORKLOADS)
def test_image_builds_and_runs_speed_mode(
    name, cli, docker_client, framework_base, tmp_path
) -> None:
    (workload,) = [w for w in list_workloads() if w.name == name]
    image = images.build(docker_client, workload, framework_base(workload))  # torch's or paddle's
    assert docker_client.images.get(image.id).labels["org.deepspark.model"] == name
    # Small batches: the test proves the image runs the contract, not how fast it trains.
    args = ("--config", "mini", "--mode", "speed", "--windows", "3", "--batch-size", "8")
    args += ("--runtime", "docker")
    code, stdout, stderr = cli("run", name, *args, "--out", str(tmp_path), "--json")
    assert code == 0, stderr
    (ran,) = Result.model_validate_json(stdout).runs
    assert ran.status == "success", ran.reason
    assert ran.dataset and ran.dataset.split("sha256:")[1]  # the generated data's digest
    assert ran.image.id == image.id
    assert ran.speed is not None and ran.speed.value > 0
