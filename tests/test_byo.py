"""Bring your own implementation: workload folders added to the catalog, absolute DS_* paths
for a workload that follows the contract and nothing else, and the implementation each plan
records (the project's reference or a vendor's, pinned by digest)."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import DATA
from deepspark_agent.planning import Request, implementation
from deepspark_agent.workloads import (
    BUILT_IN,
    WORKLOADS_ENV,
    Preset,
    Workload,
    find_workload,
    folder_digest,
)
from deepspark_core.attest import STATEMENT_FILE
from deepspark_core.report import seed_row
from deepspark_core.results import Result, RunPlan

BUILT_IN_NAMES = {p.parent.name for p in BUILT_IN.glob("*/workload.toml")}


@pytest.fixture(autouse=True)
def no_env_workloads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WORKLOADS_ENV, raising=False)


def listed(cli, *args: str) -> set[str]:
    code, out, err = cli("models", "list", "--json", *args)
    assert code == 0, err
    return {w["name"] for w in json.loads(out)}


def signed_subjects(run_set: Path) -> set[str]:
    envelope = json.loads((run_set / STATEMENT_FILE).read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    return {subject["name"] for subject in statement["subject"]}


def test_a_contract_only_workload_runs_from_a_relative_out(cli, tmp_path, monkeypatch):
    """DS_OUT_DIR is absolute: the workload starts in its own folder and appends to
    $DS_OUT_DIR/mllog.log without creating anything, and its log is signed with the run set."""
    monkeypatch.chdir(tmp_path)
    assert cli("keys", "init")[0] == 0
    code, out, err = cli(
        "run", "contract_only", "--workloads", str(DATA / "workloads"), "--runtime", "process",
        "-o", "runs", "--json",
    )  # fmt: skip
    assert code == 0, err
    result = Result.model_validate_json(out)
    (ran,) = result.runs
    assert ran.status == "success", ran.reason
    # 64 samples in each ~0.1 s window: a speed of several hundred samples/s.
    assert 100 < result.dimensions.speed.value < 640
    (run_set,) = (tmp_path / "runs").iterdir()
    assert "run-1/mllog.log" in signed_subjects(run_set)
    assert not (DATA / "workloads" / "contract_only" / "runs").exists()
    code, out, err = cli("verify", str(run_set / STATEMENT_FILE))
    assert code == 0, err
    # The implementation: a vendor's folder (added with --workloads), pinned by its digest.
    recorded = result.plan.implementation
    assert (recorded.origin, recorded.kind) == ("vendor", "folder")
    assert recorded.digest == folder_digest(DATA / "workloads" / "contract_only")
    plan = json.loads((run_set / "plan.json").read_text())
    assert plan["implementation"] == recorded.model_dump(mode="json")
    assert seed_row(result)["config"].endswith("fp32, vendor")


def test_workloads_adds_folders_and_a_name_in_two_places_is_one_line(cli, tmp_path):
    added = listed(cli, "--workloads", str(DATA / "workloads"))
    assert added == BUILT_IN_NAMES | {"sleeper", "contract_only"}
    assert {"resnet50", "bert_large_paddle"} <= BUILT_IN_NAMES  # the built-in ones stay
    twin = tmp_path / "vendor" / "resnet50"
    shutil.copytree(BUILT_IN / "resnet50", twin, ignore=shutil.ignore_patterns("__pycache__"))
    for args in (("models", "list"), ("run", "resnet50", "--out", str(tmp_path / "out"))):
        code, _, err = cli(*args, "--workloads", str(twin.parent))
        assert code == 1
        assert err.strip() == (
            f"error: workload 'resnet50' is in both {BUILT_IN / 'resnet50'} and {twin}"
        )
    assert not (tmp_path / "out").exists()
    code, _, err = cli("models", "list", "--workloads", str(tmp_path / "nosuch"))
    assert code == 1 and err.strip() == f"error: workloads folder {tmp_path / 'nosuch'} not found"


def test_deepspark_workloads_adds_each_folder_of_its_path_list(cli, tmp_path, monkeypatch):
    other = tmp_path / "acme"
    shutil.copytree(DATA / "workloads" / "sleeper", other / "acme_sleeper")
    toml = other / "acme_sleeper" / "workload.toml"
    toml.write_text(toml.read_text().replace('name = "sleeper"', 'name = "acme_sleeper"'))
    monkeypatch.setenv(WORKLOADS_ENV, os.pathsep.join([str(DATA / "workloads"), str(other)]))
    assert listed(cli) == BUILT_IN_NAMES | {"sleeper", "contract_only", "acme_sleeper"}
    _, out, _ = cli("doctor", "--json")  # its exit depends on the host's torch and Docker
    (check,) = [c for c in json.loads(out) if c["name"] == "workloads"]
    assert check["status"] == "ok" and str(other) in check["detail"]


def test_a_folder_named_unlike_its_workload_is_refused(cli, tmp_path):
    shutil.copytree(DATA / "workloads" / "sleeper", tmp_path / "renamed")
    code, _, err = cli("models", "list", "--workloads", str(tmp_path))
    assert code == 1
    assert (
        err.strip()
        == f"error: {tmp_path / 'renamed' / 'workload.toml'} names 'sleeper', not 'renamed'"
    )


def test_the_reference_implementation_is_the_built_in_folder_by_digest():
    recorded = implementation(Request(workload=find_workload("resnet50")))
    assert (recorded.origin, recorded.kind) == ("reference", "folder")
    assert recorded.source == str(BUILT_IN / "resnet50")
    assert recorded.digest == folder_digest(BUILT_IN / "resnet50")
    assert recorded.digest.startswith("sha256:") and len(recorded.digest) == 7 + 64


def test_the_folder_digest_covers_files_and_names_but_not_caches_or_runs(tmp_path):
    folder = tmp_path / "w"
    shutil.copytree(DATA / "workloads" / "contract_only", folder)
    digest = folder_digest(folder)
    for cache in ("__pycache__", "runs/r1"):
        (folder / cache).mkdir(parents=True)
        (folder / cache / "x.pyc").write_bytes(b"cached")
    assert folder_digest(folder) == digest
    (folder / "train.py").write_text((folder / "train.py").read_text() + "\n")
    changed = folder_digest(folder)
    assert changed != digest
    (folder / "train.py").rename(folder / "main.py")  # same bytes, another name
    assert folder_digest(folder) not in (digest, changed)


def test_a_plan_written_before_implementations_still_loads(cli, sleeper, tmp_path):
    code, out, _ = cli("run", "sleeper", "--runtime", "process", "--out", str(tmp_path), "--json")
    assert code == 0
    plan = json.loads(out)["plan"]
    assert plan.pop("implementation")["origin"] == "vendor"  # tests/data is not the catalog
    assert RunPlan.model_validate(plan).implementation is None


def test_the_contracts_workload_toml_example_is_a_real_workload():
    """docs/workload-contract.md's complete example is contract_only's workload.toml, and
    sets every key the agent reads (a preset's run keys and tables are the library's)."""
    doc = (Path(__file__).parents[1] / "docs" / "workload-contract.md").read_text()
    example = doc.split("```toml\n")[1].split("```")[0]
    toml = (DATA / "workloads" / "contract_only" / "workload.toml").read_text()
    assert example == "".join(line for line in toml.splitlines(True) if not line.startswith("#"))
    workload = find_workload("contract_only", [DATA / "workloads"])
    # Not every workload has a launcher of its own, a real dataset (`[dataset]`, for `data`) or
    # an infer mode (`modes`: speed and converge unless it says).
    optional = {"launcher", "dataset", "modes"}
    assert workload.model_fields_set >= set(Workload.model_fields) - optional
    library_keys = {"steps_per_window", "data", "image_size", "model", "optim"}
    full_only = {"memory", "real_data"}  # a full preset's device memory and real dataset
    # what a generated set's target may go without: its source, shortcuts, a reference sweep
    target_keys = {"target_source", "target_validated", "variant", "reference_convergence"}
    assert workload.configs["mini"].model_fields_set == (
        set(Preset.model_fields) - library_keys - full_only - target_keys
    )
