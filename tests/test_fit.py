"""Device-aware presets: the memory fit and data-directory checks before any run starts, and
synthetic data said in the result, its row, and the collector's leaderboard."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from fastapi.testclient import TestClient

from conftest import DATA, invoke
from deepspark_agent.devices import describe_system
from deepspark_agent.fit import FitError, check_data_dir, device_memory_bytes, fit_error
from deepspark_agent.placement import CPU, Placement
from deepspark_agent.workloads import WORKLOADS_ENV, find_workload
from deepspark_collector.app import create_app
from deepspark_core.report import seed_row
from deepspark_core.result_bundle import pack_run_set
from deepspark_core.results import Result
from deepspark_core.system import Accelerator
from deepspark_core.workload_spec import Memory
from test_collector import TAR, register
from test_collector import settings as collector_settings
from workload_runs import MODEL_IMAGES, environ

GB = 10**9


def test_need_is_fixed_plus_per_sample_times_batch_and_names_the_way_out() -> None:
    memory = Memory(fixed_gb=2, per_sample_gb=0.5, source="computed")
    assert fit_error("m full", memory, 10, 7 * GB, "device") is None  # 2 + 5 = 7 fits
    why = fit_error("m full", memory, 12, 7 * GB, "device")
    assert why == (
        "m full needs ~8 GB per device at batch 12 (2 GB weights, gradients, optimizer state "
        "and workspace + 6 GB activations), this device has 7 GB: use --batch-size 10 or "
        "less, a sharded variant on more devices (this one holds the whole model on every "
        "rank) or a smaller preset"
    )
    # The fixed part alone too large: no batch helps, none is offered.
    assert "--batch-size" not in fit_error("m full", memory, 1, 1 * GB, "device")


def test_the_memory_of_a_device_the_run_uses() -> None:
    system = describe_system()
    gpus = [
        Accelerator(vendor="nvidia", index=i, source="nvml", memory_bytes=size)
        for i, size in enumerate((80 * GB, 40 * GB))
    ]
    system = system.model_copy(update={"accelerators": gpus})
    both, first = Placement("nvidia", (0, 1), "NVML"), Placement("nvidia", (0,), "--devices")
    assert device_memory_bytes(system, both) == 40 * GB  # the smallest of them
    assert device_memory_bytes(system, first) == 80 * GB
    unknown = system.model_copy(
        update={"accelerators": [gpus[0].model_copy(update={"memory_bytes": None})]}
    )
    assert device_memory_bytes(unknown, first) is None  # not known: not checked
    available = device_memory_bytes(system, CPU)  # a CPU run: the host's available memory
    assert 0 < available <= psutil.virtual_memory().total


@pytest.mark.parametrize(("model", "need_gb"), [("dlrm", 97.3), ("resnet50", 29.56)])
def test_full_presets_at_their_batch_are_refused_up_front(model, need_gb, tmp_path) -> None:
    preset = find_workload(model, []).preset("full")
    assert preset.memory.need_gb(preset.batch_size) == pytest.approx(need_gb, abs=0.01)
    if psutil.virtual_memory().available > need_gb * GB:
        pytest.skip(f"this host has more than {need_gb} GB available")
    started = time.monotonic()
    code, _, err = invoke("run", model, "--config", "full", "--out", str(tmp_path / "runs"))
    assert time.monotonic() - started < 1.0  # no process, no model: refused before
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{model} full needs ~{need_gb:.3g} GB per device at batch {preset.batch_size}" in err
    assert "this host has" in err and "a smaller preset" in err
    assert not (tmp_path / "runs").exists()


def test_a_smaller_batch_passes_the_fit_and_converge_then_checks_the_data_dir(tmp_path) -> None:
    args = ("run", "resnet50", "--config", "full", "--batch-size", "8", "--mode", "converge")
    code, _, err = invoke(*args)
    assert code == 1 and "needs ~" not in err
    assert "resnet50 full trains on a real dataset in converge mode: give --data-dir" in err
    code, _, err = invoke(*args, "--data-dir", str(tmp_path / "missing"))
    assert code == 1 and "no such directory" in err
    code, _, err = invoke(*args, "--data-dir", str(tmp_path))
    assert code == 1 and f"--data-dir {tmp_path}: no SHA256SUMS manifest" in err


def test_presets_that_generate_their_data_need_no_data_dir() -> None:
    check_data_dir("resnet50 mini", find_workload("resnet50", []).preset("mini"), None)
    with pytest.raises(FitError, match="give --data-dir"):
        check_data_dir("dlrm full", find_workload("dlrm", []).preset("full"), None)


def test_the_library_checks_the_data_dir_before_building_the_model(tmp_path: Path) -> None:
    """Full DLRM converge without DS_DATA_DIR: refused at setup, before 96.1 GB of tables."""
    env = environ("dlrm", tmp_path, DS_CONFIG="full", DS_MODE="converge")
    started = time.monotonic()
    ran = subprocess.run(
        [sys.executable, "train.py"], cwd=MODEL_IMAGES / "dlrm", env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert ran.returncode != 0 and "needs DS_DATA_DIR" in ran.stderr
    assert time.monotonic() - started < 60
    assert "init_stop" not in (tmp_path / "mllog.log").read_text()


def test_a_mini_run_records_synthetic_data_and_its_row_says_so(tmp_path: Path) -> None:
    code, out, err = invoke(
        "run", "resnet50", "--runtime", "process", "--mode", "speed", "--windows", "3",
        "--out", str(tmp_path), "--json",
    )  # fmt: skip
    assert code == 0, err
    result = Result.model_validate_json(out)
    (run,) = result.runs
    assert run.synthetic_data and run.dataset.startswith("synthetic glyph scenes sha256:")
    assert "synthetic data" in seed_row(result)["config"]
    assert result.unranked is None  # speed on synthetic data is still a speed


def test_the_collector_does_not_rank_a_synthetic_data_converge_result(
    signed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_set, _ = signed  # the session's sleeper converge runs: no dataset event
    monkeypatch.setenv(WORKLOADS_ENV, str(DATA / "workloads"))
    monkeypatch.setenv("SLEEPER_BEHAVIOUR", "synthetic")
    code, out, err = invoke(
        "run", "sleeper", "--runtime", "process", "--mode", "converge", "--runs", "2",
        "--out", str(tmp_path / "synthetic"), "--json",
    )  # fmt: skip
    assert code == 0 and "signed:" in err, err
    synthetic = Result.model_validate_json(out)
    assert synthetic.unranked == "converge runs on synthetic data"
    (synthetic_set,) = (tmp_path / "synthetic").iterdir()
    with TestClient(create_app(collector_settings(tmp_path))) as client:
        register(client)
        ids = []
        for index, folder in enumerate((synthetic_set, run_set)):
            tar = pack_run_set(folder, tmp_path / f"{index}.tar").read_bytes()
            answer = client.post("/api/v1/submissions", content=tar, headers=TAR)
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["submission_id"])
        board = client.get("/models/sleeper").text
        listed = client.get("/api/v1/results").json()
        group = client.get("/results", params={"workload": "sleeper", "kind": "converge"}).text
    # One group (one platform, framework and preset): its best converge result is the ranked
    # one, though the synthetic one came first; the synthetic one is a click away, marked.
    (row,) = board.split("<tbody>")[1].split("</tbody>")[0].split("<tr ")[1:]
    assert f'data-result="{ids[1]}"' in row and f'data-result="{ids[0]}"' not in row
    assert '<td class="num">1</td>' in row and "unranked" not in row
    assert [r["unranked"] for r in listed] == ["converge runs on synthetic data", None]
    synthetic = group.split(f'data-result="{ids[0]}"')[1].split("</td>")[0]
    assert "unranked: converge runs on synthetic data" in synthetic
    assert "unranked" not in group.split(f'data-result="{ids[1]}"')[1].split("</td>")[0]
