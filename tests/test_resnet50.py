"""The ResNet-50 workload: the model, its data, and whole runs under the contract."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from workload_runs import (
    MODEL_IMAGES,
    SETUP,
    converge,
    environ,
    events,
    load_module,
    parameters,
    run,
    spec,
    speed,
)

NAME = "resnet50"
PRESETS = spec(NAME)["configs"]


def load(name: str):
    return load_module(NAME, name)


def test_full_model_has_resnet50_parameters() -> None:
    with torch.device("meta"):
        model = load("model").ResNet(**PRESETS["full"]["model"])
    assert parameters(model) == 25_557_032


def test_full_model_forward_backward_224() -> None:
    model = load("model").ResNet(**PRESETS["full"]["model"])
    logits = model(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 1000)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
def test_mini_converge(tmp_path: Path) -> None:
    log = converge(NAME, tmp_path)
    assert {e["key"]: e for e in log}["framework"]["metadata"]["device"] == "cpu"
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert all(m["samples_count"] == 1536 for m in stops)  # 48 full batches of the scenes


@pytest.mark.slow
def test_mini_speed(tmp_path: Path) -> None:
    speed(NAME, tmp_path, windows=3, DS_BATCH_SIZE="16")


def test_bad_setting_aborts(tmp_path: Path) -> None:
    result = run(NAME, tmp_path, DS_PRECISION="fp64")
    assert result.returncode != 0
    assert "DS_PRECISION='fp64'" in result.stderr
    (run_stop,) = events(tmp_path)
    assert run_stop["key"] == "run_stop" and run_stop["event_type"] == "INTERVAL_END"
    assert run_stop["metadata"]["status"] == "aborted"
    assert "DS_PRECISION='fp64' is not one of" in run_stop["metadata"]["reason"]


@pytest.mark.slow
def test_error_during_run_aborts(tmp_path: Path) -> None:
    result = run(NAME, tmp_path, DS_CONFIG="full", DS_MODE="converge")  # no DS_DATA_DIR
    assert result.returncode != 0
    log = events(tmp_path)
    assert [e["key"] for e in log] == [*SETUP[:4], "run_stop"]
    assert log[-1]["metadata"]["status"] == "aborted"
    assert "needs DS_DATA_DIR" in log[-1]["metadata"]["reason"]


@pytest.mark.slow
def test_sigterm_aborts(tmp_path: Path) -> None:
    command = [sys.executable, str(MODEL_IMAGES / NAME / "train.py")]
    env = environ(NAME, tmp_path, DS_MODE="converge")
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    log_file, deadline = tmp_path / "mllog.log", time.monotonic() + 120
    while "block_start" not in (log_file.read_text() if log_file.exists() else ""):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Terminated: SIGTERM" in stderr
    run_stop = events(tmp_path)[-1]
    assert run_stop["key"] == "run_stop" and run_stop["metadata"]["status"] == "aborted"
    assert run_stop["metadata"]["reason"] == "Terminated: SIGTERM"
