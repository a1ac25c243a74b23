"""NVML beside nvidia-smi (telemetry.crosscheck): the comparison's arithmetic on known ticks,
and the command against the recorded nvidia-smi outputs replayed by the fake tool."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepspark_agent.telemetry.choose import nvml_available
from deepspark_agent.telemetry.crosscheck import MIB, Tick, compare, main, markdown
from deepspark_core.metrics import Memory, Power, SourcePower, Speed
from deepspark_core.results import NodeSource, Result

DATA = Path(__file__).parent / "data"
SIGNED = DATA / "signed-2026-12-05" / "run-set"
RECORDED = DATA / "vendor-smi" / "nvidia-smi__query-gpu-csv-header-units__nvgpuexp-h100-590.48.01"


def ticks(seconds: int = 10) -> list[Tick]:
    """NVML at 300 W instant, 310 W average, its counter at 300 J/s; nvidia-smi at 305 W;
    memory 1000 MiB by NVML, 1002 by nvidia-smi; a second GPU that only nvidia-smi sees."""
    out = []
    for i in range(seconds * 10 + 1):
        nvml = {"power_w": 300.0, "power_avg_w": 310.0, "energy_j": 5000 + 30.0 * i}
        nvml["mem_used_bytes"] = 1000 * MIB
        smi = {"power_w": 305.0, "mem_used_bytes": 1002 * MIB}
        readings = {"nvml": {"nvidia:0": nvml}, "nvidia-smi": {"nvidia:0": smi, "nvidia:1": smi}}
        out.append(Tick(i * 100_000_000, readings))
    return out


def test_power_memory_and_energy_are_compared_over_the_same_interval() -> None:
    first, second = compare(ticks())
    assert first.device == "nvidia:0" and first.seconds == 10.0
    assert first.ticks == {"nvml": 101, "nvidia-smi": 101}
    assert first.mean["nvml"]["power_w"] == 300.0 and first.mean["nvidia-smi"]["power_w"] == 305.0
    assert first.power_gap_w == pytest.approx(5.0)  # against NVML's average, power.draw's like
    assert first.memory_gap_mib == pytest.approx(2.0)
    assert first.counter_j == pytest.approx(3000.0)
    assert first.integral_j["nvml"] == pytest.approx(3000.0)
    assert first.integral_j["nvidia-smi"] == pytest.approx(3050.0)
    assert second.device == "nvidia:1" and second.ticks == {"nvml": 0, "nvidia-smi": 101}
    assert second.counter_j is None and second.power_gap_w is None
    text = markdown([first, second], ["a note"])
    assert "integral / counter: NVML 1.000, nvidia-smi 1.017" in text
    assert "| power, mean (W) | 300.0 instant, 310.0 average | 305.0 (power.draw) |" in text
    assert "counter n/a" in text and text.endswith("- a note\n")


def test_without_nvml_s_average_the_gap_is_to_its_instant_power() -> None:
    recorded = ticks(2)
    for t in recorded:
        del t.readings["nvml"]["nvidia:0"]["power_avg_w"]
    (first, _) = compare(recorded)
    assert first.power_gap_w == pytest.approx(5.0) and "power_avg_w" not in first.mean["nvml"]
    assert compare(recorded[:1]) == []  # one tick spans no interval


def command(*args: str, **env: str) -> subprocess.Popen[str]:
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "deepspark_agent.telemetry.crosscheck", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ,
    )  # fmt: skip


@pytest.fixture
def fake_smi(tmp_path: Path) -> Path:
    tool = tmp_path / "nvidia-smi"
    tool.write_text(f'#!/bin/sh\nexec {sys.executable} {DATA / "fake_smi.py"} "$@"\n')
    tool.chmod(0o755)
    return tool


def test_the_recorded_outputs_are_read_until_sigterm(fake_smi, tmp_path) -> None:
    files = os.pathsep.join(str(RECORDED) + f"-{load}.txt" for load in ("idle", "load"))
    report = tmp_path / "telemetry.md"
    args = ("--seconds", "60", "--smi-binary", str(fake_smi), "--markdown", str(report))
    started_log = tmp_path / "smi.pids"  # the fake tool writes its pid: the handlers are set
    proc = command(*args, FAKE_SMI_FILES=files, FAKE_SMI_LOG=str(started_log))
    deadline = time.monotonic() + 30
    while not started_log.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # some ticks of the recordings
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert time.monotonic() - started < 10  # stopped by the signal, not by --seconds
    assert report.read_text() == stdout
    (power_row,) = [line for line in stdout.splitlines() if line.startswith("| power")]
    smi_power = float(power_row.split("|")[3].split()[0])
    assert 69.85 < smi_power < 631.95  # between the idle and the load recording's power.draw


@pytest.mark.skipif(nvml_available(), reason="NVML starts on this host")
def test_no_source_is_an_error_in_one_line(tmp_path) -> None:
    proc = command("--seconds", "1", "--smi-binary", str(tmp_path / "missing"))
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert stderr == "crosscheck: error: neither NVML nor nvidia-smi gave a reading\n"
    assert "not found" in stdout and "No device was read" in stdout


def measured(result: Result) -> Result:
    """A result whose dimensions hold what a GPU run with NVML telemetry records."""
    dims = result.dimensions.model_copy(
        update={
            "speed": Speed(value=2500.0, windows=3, per_window=(2490.0, 2500.0, 2510.0)),
            "power": Power(mean_w=(350.0,), energy_j=10500.0, j_per_sample=None),
            "memory": Memory(mean_gb=(18.0,), peak_gb=(20.5,)),
            "power_scope": "accelerator", "memory_scope": "accelerator", "telemetry_hz": 10.0,
            "energy_counter_j": 10000.0,
            "node_power": [NodeSource(source="ipmi", hz=1.0, power=SourcePower(
                mean_w=620.0, basis="power", readings=30, counter_j=None, integral_j=18600.0,
                samples=75000))],
        }
    )  # fmt: skip
    return result.model_copy(update={"dimensions": dims, "notes": ["a note"]})


def test_each_model_s_energy_counter_is_set_beside_its_power_integral(tmp_path, capsys) -> None:
    recorded = Result.model_validate_json((SIGNED / "result.json").read_text())
    results = tmp_path / "results.json"
    rows = [measured(recorded).model_dump(mode="json"), recorded.model_dump(mode="json")]
    results.write_text(json.dumps(rows))
    assert main(["--results", str(results), "--markdown", str(tmp_path / "runs.md")]) == 0
    text = capsys.readouterr().out
    assert text == (tmp_path / "runs.md").read_text()
    first, second = [line for line in text.splitlines() if line.startswith("| sleeper")]
    assert first.endswith(
        "| 2500.0/s | 350.0 | 20.50 | power accelerator, memory accelerator, 10.0 Hz "
        "| 10000.0, 10500.0 | 1.050 | ipmi 0.248 (power integral) | ipmi 620 (30 readings, 1 Hz) "
        "| idle not measured |"
    )
    # The CPU fixture: its process tree's memory, no power, no energy counter, no ratio.
    cpu = "| n/a | 0.01 | power none, memory process-tree, 10.0 Hz | n/a, n/a | n/a |"
    assert second.endswith(cpu + " N/A | N/A: no node power source | idle not measured |")
    assert "- sleeper: a note" in text


def test_unreadable_results_are_one_line(tmp_path, capsys) -> None:
    (tmp_path / "bad.json").write_text("[{}")
    assert main(["--results", str(tmp_path / "bad.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"crosscheck: error: {tmp_path / 'bad.json'}: ") and err.count("\n") == 1
