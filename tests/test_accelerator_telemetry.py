"""Accelerator power and memory through the whole agent, from a replayed vendor tool.

No accelerator exists here, so `nvidia-smi` is the recorded-output fake: it prints the
captured H100 idle and load readings in turn, through the sampler's real command line.
"""

from __future__ import annotations

import json
import statistics

import pytest

from conftest import DATA, fake_smi_tool
from deepspark_agent.telemetry.choose import nvml_available
from deepspark_core.events import read_events
from deepspark_core.results import Result

SMI = DATA / "vendor-smi"
H100 = "nvidia-smi__query-gpu-csv-header-units__nvgpuexp-h100-590.48.01-{}.txt"


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch) -> None:
    fake_smi_tool(tmp_path / "bin", monkeypatch)
    files = [SMI / H100.format("idle"), SMI / H100.format("load")]
    monkeypatch.setenv("FAKE_SMI_FILES", ":".join(map(str, files)))


def test_power_and_memory_come_from_the_accelerator_over_the_measured_windows(
    cli, sleeper, fake_nvidia_smi, tmp_path
):
    code, out, err = cli(
        "run", "sleeper", "--runtime", "process", "--telemetry", "smi:nvidia-smi",
        "--out", str(tmp_path / "out"), "--json",
    )  # fmt: skip
    assert code == 0, err
    result = Result.model_validate_json(out)
    dims = result.dimensions
    assert dims.power_scope == dims.memory_scope == "accelerator"
    # Recompute the mean power by hand from the raw rows inside the measured windows.
    (run_set,) = (tmp_path / "out").iterdir()
    windows = read_events(run_set / "run-1" / "mllog.log").windows()[1:]
    rows = [json.loads(line) for line in (run_set / "run-1" / "telemetry.jsonl").open()]
    inside = [
        r["power_w"]
        for r in rows
        if r["scope"] == "accelerator"
        and any(w.start_ns <= r["t_ns"] <= w.stop_ns for w in windows)
    ]
    assert set(inside) <= {69.85, 631.95}  # the two recorded readings (power.draw, as streamed)
    assert dims.power.mean_w[0] == pytest.approx(statistics.fmean(inside))
    assert dims.power.energy_j > 0
    assert dims.power.j_per_sample == pytest.approx(dims.power.energy_j / (5 * 100))
    assert dims.memory.devices == 1


def test_telemetry_choices_fail_in_one_line(cli, sleeper, tmp_path):
    cases = [
        ("smi:nosuch", "--telemetry smi:nosuch: known tools: nvidia-smi"),
        ("bogus", "--telemetry 'bogus': expected auto, nvml, smi:<tool>, none"),
    ]
    if not nvml_available():  # a GPU host honours it
        cases.append(("nvml", "--telemetry nvml: NVML does not start"))
    for choice, message in cases:
        code, _, err = cli("run", "sleeper", "--telemetry", choice, "--out", str(tmp_path))
        assert code == 1 and message in err and err.count("\n") == 1
