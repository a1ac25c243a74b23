"""scripts/gpu-check: its dry run end to end on this CPU host (every step but the GPU's), and
what it says on a host whose torch cannot use a GPU."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "scripts" / "gpu-check"


def gpu_check(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=env, timeout=300)
    return done, time.monotonic() - started


def test_the_dry_run_runs_every_step_but_the_gpu_s(tmp_path) -> None:
    report = tmp_path / "report.md"
    done, seconds = gpu_check("--dry-run", "--report", str(report), "--out", str(tmp_path / "o"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert seconds < 60
    text = done.stdout
    assert report.read_text() == text
    assert "a dry run: every step but the GPU's" in text
    assert f"- `{sys.executable}`: imports the agent; torch " in text
    doctor = text.split("## doctor")[1].split("##")[0]
    assert re.search(r"ok +python: 3\.", doctor) and "workloads:" in doctor
    assert "- host: " in text.split("## devices --json")[1]
    plan = text.split("Planned, not run (`up --plan`):")[1].split("## Telemetry")[0]
    for row in (
        "resnet50 .* full .* bf16",
        "resnet50 .* full .* amp",
        "bert_large .* bf16",
        "bert_large .* amp",
        "resnet50 .* mini .* speed-1x, converge-1, converge-2",
    ):
        assert re.search(row, plan), row  # fmt: skip
    # The recorded idle (69.85 W) and loaded (631.95 W) H100, replayed in turn.
    (power,) = [line for line in text.splitlines() if line.startswith("| power, mean")]
    assert 69.85 < float(power.split("|")[3].split()[0]) < 631.95
    assert re.search(r"\n## Verdict\n\nEvery step passed, in \d+ s\.\n$", text)
    assert (tmp_path / "o" / "summary.md").read_text() == text


@pytest.mark.skipif(
    subprocess.run(
        [sys.executable, "-c", "import torch, sys; sys.exit(torch.cuda.is_available())"]
    ).returncode
    == 1,
    reason="this torch sees a GPU",
)
def test_a_cpu_build_of_torch_is_said_and_doctor_still_speaks(tmp_path) -> None:
    done, _ = gpu_check("--out", str(tmp_path))
    assert done.returncode == 1
    assert "a CPU build" in done.stdout and "Install the CUDA build into" in done.stdout
    assert "## doctor" in done.stdout and "torch (process runtime)" in done.stdout
    assert "Failed: interpreter" in done.stdout and "## The gpu-smoke suite" not in done.stdout


def test_bad_arguments_are_one_line(tmp_path) -> None:
    done, _ = gpu_check("--report")
    assert (done.returncode, done.stderr) == (1, "gpu-check: error: --report needs a file\n")
    done, _ = gpu_check("--report", str(tmp_path / "no" / "such" / "dir" / "r.md"))
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("gpu-check: error: --report ")
