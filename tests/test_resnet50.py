"""The ResNet-50 workload: the model, its data, and whole runs under the contract."""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
import torch
from PIL import Image

from deepspark_workload import ContractError

MODEL_IMAGES = Path(__file__).resolve().parents[1] / "model_images"
WORKLOAD = MODEL_IMAGES / "resnet50"
PRESETS = tomllib.loads((WORKLOAD / "workload.toml").read_text())["configs"]
SETUP = [
    "submission_benchmark", "framework", "seed", "init_start",
    "init_stop", "global_batch_size", "quality_metric", "run_start",
]  # fmt: skip


def load(name: str) -> ModuleType:
    """A module of the workload, imported under a name no other workload's model.py takes."""
    spec = importlib.util.spec_from_file_location(f"resnet50_{name}", WORKLOAD / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def environ(out: Path, **env: str) -> dict[str, str]:
    """The agent's DS_* variables for a mini run writing to out, overridden by env."""
    return {
        **os.environ,
        "PYTHONPATH": str(MODEL_IMAGES),
        "DS_CONTRACT_VERSION": "1",
        "DS_MODEL": "resnet50",
        "DS_CONFIG": "mini",
        "DS_OUT_DIR": str(out),
        **env,
    }


def run(out: Path, *, ranks: int = 1, **env: str) -> subprocess.CompletedProcess:
    """train.py as the agent starts it: directly, or through torchrun for several ranks."""
    launcher = [sys.executable]
    if ranks > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        launcher += ["-m", "torch.distributed.run", "--nproc-per-node", str(ranks)]
        launcher += ["--master-port", str(port)]
    command = [*launcher, str(WORKLOAD / "train.py")]
    return subprocess.run(
        command, env=environ(out, **env), capture_output=True, text=True, timeout=300
    )


def events(out: Path) -> list[dict]:
    lines = (out / "mllog.log").read_text().splitlines()
    return [json.loads(line.removeprefix(":::MLLOG ")) for line in lines]


def test_full_model_has_resnet50_parameters() -> None:
    with torch.device("meta"):
        model = load("model").ResNet(**PRESETS["full"]["model"])
    assert sum(p.numel() for p in model.parameters()) == 25_557_032


def test_full_model_forward_backward_224() -> None:
    model = load("model").ResNet(**PRESETS["full"]["model"])
    logits = model(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 1000)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_image_folder(tmp_path: Path) -> None:
    data = load("data")
    for split, n in (("train", 3), ("val", 1)):
        for c, name in enumerate(("cat", "dog", "fish")):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(n):
                image = Image.new("RGB", (40 + 10 * i, 30), (80 * c, 40 * i, 200))
                image.save(tmp_path / split / name / f"{i}.png")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    train, val = data.image_folder(tmp_path, 32)
    assert (len(train), len(val)) == (9, 3)
    assert [label for _, label in val.samples] == [0, 1, 2]
    x, label = train[4]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and label == 1
    x, label = val[2]  # uniform colour (160, 0, 200), normalised with ImageNet statistics
    expected = (torch.tensor([160, 0, 200]) / 255 - data.MEAN.flatten()) / data.STD.flatten()
    assert torch.allclose(x.mean((1, 2)), expected, atol=1e-2) and label == 2
    with pytest.raises(ContractError, match="no class folders"):
        data.image_folder(tmp_path / "missing", 32)
    (tmp_path / "val" / "bird").mkdir()
    with pytest.raises(ContractError, match="classes the training set lacks"):
        data.image_folder(tmp_path, 32)


@pytest.mark.slow
def test_mini_converge(tmp_path: Path) -> None:
    from mlperf_logging.compliance_checker.mlp_parser import parse_file

    result = run(tmp_path, DS_MODE="converge", DS_SEED="1")
    assert result.returncode == 0, result.stderr
    log = events(tmp_path)
    epochs = ["block_start", "block_stop", "eval_accuracy"] * 6
    assert [e["key"] for e in log] == SETUP + epochs + ["run_stop"]
    assert all(e["metadata"]["rank"] == 0 and "mono_ns" in e["metadata"] for e in log)
    by_key = {e["key"]: e for e in log}
    assert by_key["seed"]["value"] == 1 and by_key["global_batch_size"]["value"] == 32
    assert by_key["framework"]["metadata"]["device"] == "cpu"
    quality = by_key["quality_metric"]
    assert quality["value"] == "top1" and quality["metadata"]["direction"] == "higher"
    target = quality["metadata"]["target"]
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert [m["window"] for m in stops] == list(range(6))
    assert all(m["samples_count"] == 1437 // 32 * 32 for m in stops)  # full batches of the split
    evals = [e for e in log if e["key"] == "eval_accuracy"]
    assert [e["metadata"]["epoch_num"] for e in evals] == list(range(1, 7))
    assert evals[-1]["value"] >= target == 0.9
    assert log[-1]["metadata"]["status"] == "success"
    assert result.stdout.count(":::MLLOG ") == len(log)
    lines, errors = parse_file(str(tmp_path / "mllog.log"), ruleset="6.1.0")
    assert len(lines) == len(log) and errors == []


@pytest.mark.slow
def test_mini_speed(tmp_path: Path) -> None:
    result = run(tmp_path, DS_MODE="speed", DS_BATCH_SIZE="16", DS_WINDOWS="3")
    assert result.returncode == 0, result.stderr
    log = events(tmp_path)
    assert [e["key"] for e in log] == SETUP + ["block_start", "block_stop"] * 4 + ["run_stop"]
    samples = [e["metadata"]["samples_count"] for e in log if e["key"] == "block_stop"]
    assert samples == [PRESETS["mini"]["steps_per_window"] * 16] * 4


@pytest.mark.slow
def test_mini_speed_two_ranks(tmp_path: Path) -> None:
    result = run(tmp_path, ranks=2, DS_MODE="speed")
    assert result.returncode == 0, result.stderr
    log = events(tmp_path)
    assert [e["key"] for e in log] == SETUP + ["block_start", "block_stop"] * 6 + ["run_stop"]
    assert all(e["metadata"]["rank"] == 0 for e in log)
    assert log[SETUP.index("global_batch_size")]["value"] == 2 * 32
    samples = [e["metadata"]["samples_count"] for e in log if e["key"] == "block_stop"]
    assert samples == [PRESETS["mini"]["steps_per_window"] * 2 * 32] * 6  # over both ranks


def test_bad_setting_aborts(tmp_path: Path) -> None:
    result = run(tmp_path, DS_PRECISION="fp64")
    assert result.returncode != 0
    assert "DS_PRECISION='fp64'" in result.stderr
    (run_stop,) = events(tmp_path)
    assert run_stop["key"] == "run_stop" and run_stop["event_type"] == "INTERVAL_END"
    assert run_stop["metadata"]["status"] == "aborted"
    assert "DS_PRECISION='fp64' is not one of" in run_stop["metadata"]["reason"]


@pytest.mark.slow
def test_error_during_run_aborts(tmp_path: Path) -> None:
    result = run(tmp_path, DS_CONFIG="full", DS_MODE="converge")  # no DS_DATA_DIR
    assert result.returncode != 0
    log = events(tmp_path)
    assert [e["key"] for e in log] == [*SETUP[:4], "run_stop"]
    assert log[-1]["metadata"]["status"] == "aborted"
    assert "needs DS_DATA_DIR" in log[-1]["metadata"]["reason"]


@pytest.mark.slow
def test_sigterm_aborts(tmp_path: Path) -> None:
    command = [sys.executable, str(WORKLOAD / "train.py")]
    env = environ(tmp_path, DS_MODE="converge")
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
