"""The Docker runtime and images with a real engine: runs, failures, registries, digests."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from docker.errors import ImageNotFound

from conftest import DATA, assert_telemetry_covers_the_run
from deepspark_agent import images, placement
from deepspark_agent.placement import Roots
from deepspark_agent.workloads import find_workload
from deepspark_core.report import seed_row
from deepspark_core.results import Result
from workload_runs import preset

pytestmark = pytest.mark.docker
ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def sleeper_image(docker_client, base_image) -> str:
    workload = find_workload("sleeper", [DATA / "workloads"])
    return images.build(docker_client, workload, base_image).id


VENDOR_IMAGE = "vendor.example/acme/resnet50:test"


@pytest.fixture(scope="module")
def vendor_image(docker_client, base_image) -> str:
    """A vendor's own image: the contract-only workload FROM the project's CPU base, under a
    name of the vendor's."""
    image, _ = docker_client.images.build(
        path=str(DATA / "workloads"), dockerfile="contract_only/Dockerfile", tag=VENDOR_IMAGE,
        buildargs={"BASE_IMAGE": base_image}, rm=True, forcerm=True,
    )  # fmt: skip
    return image.id


def run(cli, out: Path, *args: str) -> tuple[int, Result | None, str]:
    code, stdout, stderr = cli("run", "--out", str(out), "--json", *args)
    return code, Result.model_validate_json(stdout) if stdout.strip() else None, stderr


def filled(result: Result) -> set[str]:
    """Which dimensions a result has: the 'shape' both runtimes must agree on."""
    return {name for name, value in result.dimensions if value is not None}


def behaviour(tmp_path: Path, name: str) -> Path:
    """A data directory telling the sleeper which fault to play (containers see no host env)."""
    data = tmp_path / f"data-{name}"
    data.mkdir()
    (data / "behaviour").write_text(name)
    return data


def test_docker_and_process_runtimes_give_the_same_row(
    leftovers, cli, sleeper, sleeper_image, docker_client, tmp_path
):
    args = ("sleeper", "--mode", "converge", "--runs", "2")
    code, in_docker, _ = run(cli, tmp_path / "d", *args, "--runtime", "docker")
    assert code == 0, in_docker.notes
    code, in_process, _ = run(cli, tmp_path / "p", *args, "--runtime", "process")
    assert code == 0
    assert filled(in_docker) == filled(in_process) >= {"speed", "accuracy", "stability", "memory"}
    # The same hand-computable figures: seeds 0 and 1 score 0.50 and 0.51, median 0.505.
    assert in_docker.dimensions.accuracy.value == pytest.approx(0.505)
    assert {r.image.id for r in in_docker.runs} == {sleeper_image}
    # Memory comes from the container's cgroup in Docker, from the process tree outside it.
    assert in_docker.dimensions.memory_scope == "container"
    assert in_process.dimensions.memory_scope == "process-tree"
    assert in_docker.dimensions.telemetry_hz >= 9
    (run_set,) = (tmp_path / "d").iterdir()
    assert_telemetry_covers_the_run(run_set / "run-1", "container")
    assert in_docker.plan.runtime == "docker" and in_process.runs[0].image is None
    assert leftovers() == []


@pytest.mark.parametrize(
    ("fault", "args", "reason"),
    [
        ("crash", (), "exit code 3 (log ends without run_stop"),
        ("hang", ("--max-seconds", "5"), "killed after 5 s budget"),
        ("oom", ("--memory-limit", "128m"), "killed for memory (out of memory, limit 128m)"),
    ],
)
def test_failed_containers_are_recorded_and_removed(
    leftovers, cli, sleeper, sleeper_image, docker_client, tmp_path, fault, args, reason
):
    data = behaviour(tmp_path, fault)
    code, result, _ = run(
        cli, tmp_path / "out", "sleeper", "--runtime", "docker", "--data-dir", str(data), *args
    )
    assert code == 1
    (failed,) = result.runs
    # A run the agent killed at its budget is cut short, not failed on its own (issue 14).
    assert failed.status == ("incomplete" if fault == "hang" else "aborted")
    assert failed.reason.startswith(reason)
    assert leftovers() == []


def test_a_missing_image_is_a_clear_error_and_never_pulled(
    cli, docker_client, tmp_path, monkeypatch
):
    workloads = tmp_path / "workloads"
    shutil.copytree(DATA / "workloads" / "sleeper", workloads / "sleeper")
    toml = workloads / "sleeper" / "workload.toml"
    never_built = 'name = "sleeper"\nversion = "0.0.0-never-built"'
    toml.write_text(toml.read_text().replace('name = "sleeper"', never_built))
    monkeypatch.setenv("DEEPSPARK_WORKLOADS", str(workloads))
    code, _, err = cli("run", "sleeper", "--runtime", "docker", "--out", str(tmp_path / "out"))
    assert code == 1
    assert "image deepspark/sleeper:0.0.0-never-built is not present locally" in err
    assert "never pulls implicitly" in err


def test_run_image_measures_a_vendors_image_for_a_catalog_model(
    leftovers, cli, vendor_image, docker_client, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a relative --out: the container sees its mount, /ds/out
    code, out, err = cli("run", "resnet50", "--image", VENDOR_IMAGE, "-o", "runs", "--json")
    assert code == 0, err
    result = Result.model_validate_json(out)
    (ran,) = result.runs
    assert ran.status == "success", ran.reason
    assert ran.image.id == vendor_image and ran.framework == "none (cpu)"  # as the image logged it
    # The catalog's resnet50 gives the preset, metric and target; the image declares no framework.
    plan = result.plan
    mini = preset("resnet50", "mini")
    assert (plan.quality.metric, plan.quality.target, plan.batch_size) == (
        "top1", mini.target, mini.batch_size
    )  # fmt: skip
    assert plan.framework is None and plan.runtime == "docker"
    recorded = plan.implementation
    assert (recorded.origin, recorded.kind) == ("vendor", "image")
    assert (recorded.source, recorded.digest) == (VENDOR_IMAGE, vendor_image)
    assert 100 < result.dimensions.speed.value < 640  # 64 samples in each ~0.1 s window
    assert seed_row(result)["config"] == "none (cpu), mini, bs:32, 1x, fp32, vendor image"
    (run_set,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_set / "plan.json").read_text())["implementation"]["kind"] == "image"
    assert leftovers() == []


def test_an_added_folder_builds_with_its_own_dockerfile_and_runs_in_docker(
    leftovers, cli, base_image, docker_client, tmp_path
):
    added = ("--workloads", str(DATA / "workloads"))
    code, out, err = cli("images", "build", "contract_only", *added, "--base", base_image)
    assert code == 0, err
    assert out.startswith("built deepspark/contract_only:0.1.0 sha256:")
    code, result, err = run(cli, tmp_path, "contract_only", *added, "--runtime", "docker")
    assert code == 0, err
    assert result.runs[0].status == "success" and result.runs[0].image.tag.endswith("only:0.1.0")
    assert result.plan.implementation.origin == "vendor" and leftovers() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--image", "vendor.example/nosuch:1"), "image vendor.example/nosuch:1 is not present"),
        (("--image", VENDOR_IMAGE, "--nproc", "2"), "--image runs the image's own ENTRYPOINT"),
        (("--image", VENDOR_IMAGE, "--runtime", "process"), "as one rank in docker"),
    ],
)
def test_run_image_refuses_what_it_cannot_run_in_one_line(
    cli, vendor_image, tmp_path, args, message
):
    code, _, err = cli("run", "resnet50", *args, "--out", str(tmp_path / "out"))
    assert code == 1 and len(err.strip().splitlines()) == 1 and message in err
    assert not (tmp_path / "out").exists()  # refused before anything started


def test_device_nodes_and_the_visible_devices_variable_reach_the_container(
    leftovers, cli, sleeper, sleeper_image, monkeypatch, tmp_path
):
    """A real char device (/dev/null) under Ascend's node names, found by auto: the container
    sees the first device's node and the control nodes as char devices, and the variable."""
    dev = tmp_path / "host" / "dev"
    dev.mkdir(parents=True)
    for name in ("davinci0", "davinci1", "davinci_manager", "devmm_svm", "hisi_hdc"):
        (dev / name).symlink_to("/dev/null")
    monkeypatch.setattr(placement, "HOST", Roots(dev, tmp_path / "sys", tmp_path / "proc"))
    data = behaviour(tmp_path, "devices")
    code, result, err = run(
        cli, tmp_path / "out", "sleeper", "--runtime", "docker", "--data-dir", str(data)
    )
    assert code == 0 and result.runs[0].status == "success", err
    assert "devices: 2 ascend (device nodes) -> docker /dev/davinci0, /dev/davinci1, " in err
    (run_set,) = (tmp_path / "out").iterdir()
    seen = json.loads((run_set / "run-1" / "devices.json").read_text())
    assert {"davinci0", "davinci_manager", "devmm_svm", "hisi_hdc"} <= set(seen["char_devices"])
    assert "davinci1" not in seen["char_devices"]  # one rank: the first device only
    assert seen["env"] == {"ASCEND_RT_VISIBLE_DEVICES": "0"}
    assert leftovers() == []


def test_push_to_an_authenticated_registry_needs_credentials(
    cli, sleeper, sleeper_image, docker_client, registries, monkeypatch
):
    registry = registries["DS_TEST_AUTH_REGISTRY"]
    code, _, err = cli("images", "push", "sleeper", "--registry", registry)
    assert code == 1 and "error:" in err and "Traceback" not in err
    password = registries["DS_TEST_REGISTRY_PASSWORD"] + "\n"
    user = registries["DS_TEST_REGISTRY_USER"]
    code, out, err = cli(
        "images", "push", "sleeper", "--registry", registry, "--username", user,
        "--password-stdin", input=password,
    )  # fmt: skip
    assert code == 0, err
    assert out.strip().startswith(f"{registry}/deepspark/sleeper@sha256:")


@pytest.mark.slow
def test_resnet50_image_round_trips_through_a_registry_by_digest(
    leftovers, cli, docker_client, base_image, registries, tmp_path
):
    """Build, push, remove, pull back by digest, run: the digest is in the result."""
    registry = registries["DS_TEST_REGISTRY"]
    workload = find_workload("resnet50")
    images.build(docker_client, workload, base_image)
    pinned = images.push(docker_client, workload, registry)
    digest = pinned.split("@")[1]
    for tag in (workload.image, f"{images.registry_repo(registry, workload)}:{workload.version}"):
        docker_client.images.remove(tag)
    with pytest.raises(ImageNotFound):
        docker_client.images.get(workload.image)

    code, _, err = cli("images", "pull", "resnet50", "--registry", registry, "--digest", digest)
    assert code == 0, err
    args = ("resnet50", "--config", "mini", "--mode", "speed")
    code, in_docker, _ = run(cli, tmp_path / "d", *args, "--runtime", "docker")
    assert code == 0, in_docker.notes
    (ran,) = in_docker.runs
    assert ran.status == "success" and ran.framework.startswith("pytorch 2.13.0")
    assert pinned in ran.image.repo_digests
    code, in_process, _ = run(cli, tmp_path / "p", *args, "--runtime", "process")
    assert filled(in_docker) == filled(in_process)
    assert leftovers() == []


def test_offline_bundle_round_trip_with_the_registries_stopped(
    cli, sleeper, sleeper_image, docker_client, tmp_path
):
    """bundle create, stop the registries, remove the image, bundle import, run: no network."""
    suite = tmp_path / "offline.toml"
    suite.write_text('name = "offline"\n[[workloads]]\nmodel = "sleeper"\n')
    bundle = tmp_path / "offline.bundle.tar"
    code, out, err = cli("bundle", "create", "--suite", str(suite), "--out", str(bundle))
    assert code == 0, err
    assert f"bundled deepspark/sleeper:0.1.0 {sleeper_image}" in out
    docker_env = [str(ROOT / "scripts" / "docker-env")]
    subprocess.run([*docker_env, "--stop-registries"], check=True, capture_output=True)
    try:
        docker_client.images.remove("deepspark/sleeper:0.1.0")
        code, out, err = cli("bundle", "import", str(bundle))
        assert code == 0, err
        assert f"loaded deepspark/sleeper:0.1.0 {sleeper_image}" in out
        code, result, _ = run(cli, tmp_path / "out", "sleeper", "--runtime", "docker")
        assert code == 0 and result.runs[0].image.id == sleeper_image
    finally:
        subprocess.run(docker_env, check=True, capture_output=True)

    code, out, _ = cli("images", "list", "--json")
    (listed,) = [i for i in json.loads(out) if "deepspark/sleeper:0.1.0" in i["tags"]]
    assert listed["id"] == sleeper_image and listed["model"] == "sleeper"


def test_up_offline_from_a_bundle_runs_its_suite_in_containers(
    leftovers, cli, sleeper, sleeper_image, docker_client, tmp_path
):
    """The air-gapped lab: one bundle file, the registries stopped, the image removed."""
    (tmp_path / "lab").mkdir()
    suite = tmp_path / "lab.toml"
    suite.write_text('name = "lab"\n[[workloads]]\nmodel = "sleeper"\nstability_runs = 2\n')
    bundle = tmp_path / "lab" / "lab.bundle.tar"
    assert cli("bundle", "create", "--suite", str(suite), "--out", str(bundle))[0] == 0
    docker_env = [str(ROOT / "scripts" / "docker-env")]
    subprocess.run([*docker_env, "--stop-registries"], check=True, capture_output=True)
    try:
        docker_client.images.remove("deepspark/sleeper:0.1.0")
        args = ("--offline", "--bundle", str(bundle), "--out", str(tmp_path / "o"), "--json")
        code, out, err = cli("up", *args)
        assert code == 0, err
        assert f"loaded deepspark/sleeper:0.1.0 {sleeper_image}" in err
        (result,) = (Result.model_validate(r) for r in json.loads(out))
        assert [r.label for r in result.runs] == ["speed-1x", "converge-1", "converge-2"]
        assert all(r.image.id == sleeper_image and r.status == "success" for r in result.runs)
        assert result.dimensions.stability.runs == 2
    finally:
        subprocess.run(docker_env, check=True, capture_output=True)
    assert leftovers() == []


def test_up_pulls_from_a_registry_first(cli, sleeper, sleeper_image, registries, tmp_path):
    registry = registries["DS_TEST_REGISTRY"]
    assert cli("images", "push", "sleeper", "--registry", registry)[0] == 0
    suite = tmp_path / "pulled.toml"
    suite.write_text('name = "pulled"\n[[workloads]]\nmodel = "sleeper"\nstability_runs = 0\n')
    args = ("--suite", str(suite), "--registry", registry, "--out", str(tmp_path / "o"), "--json")
    code, out, err = cli("up", *args)
    assert code == 0, err
    assert f"pulled deepspark/sleeper:0.1.0 {sleeper_image}" in err
    (result,) = (Result.model_validate(r) for r in json.loads(out))
    assert result.runs[0].image.id == sleeper_image and result.plan.runtime == "docker"
    code, _, err = cli("up", "--suite", str(suite), "--registry", registry, "--offline")
    assert code == 1 and "pick one" in err


def test_a_tampered_bundle_is_refused_in_one_line(cli, tmp_path):
    bundle = tmp_path / "bad.tar"
    bundle.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    code, _, err = cli("bundle", "import", str(bundle))
    assert code == 1 and err.count("\n") == 1 and "error:" in err


def test_a_failing_workload_does_not_stop_the_suite(
    leftovers, cli, sleeper, sleeper_image, docker_client, tmp_path
):
    behaviour(tmp_path, "crash")
    suite = tmp_path / "mixed.toml"
    suite.write_text(
        'name = "mixed"\n'
        '[[workloads]]\nmodel = "sleeper"\ndata_dir = "data-crash"\nstability_runs = 0\n'
        '[[workloads]]\nmodel = "sleeper"\nstability_runs = 2\n'
    )
    code, out, _ = cli(
        "up", "--suite", str(suite), "--runtime", "docker", "--out", str(tmp_path / "o"), "--json"
    )
    assert code == 1
    crashed, fine = (Result.model_validate(r) for r in json.loads(out))
    assert crashed.runs[0].reason.startswith("exit code 3")
    assert [r.status for r in fine.runs] == ["success"] * 3  # speed-1x, converge-1, converge-2
    assert fine.dimensions.stability is not None
    assert leftovers() == []
