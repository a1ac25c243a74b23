"""Running a workload's train.py as the agent does, and checking what it logged.

Every workload's test (tests/test_<name>.py), PyTorch or PaddlePaddle, uses these instead of
its own copy:

    model = load_module("bert_large", "model")
    log = converge("bert_large", tmp_path)         # mini converge, checked; returns the events
    log = infer("resnet50", tmp_path, checkpoint)  # mini infer, with a converge run's weights
"""

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from deepspark_agent.runtime.base import Launch, argv
from deepspark_agent.workloads import load_workload
from deepspark_core.contract import CHECKPOINT_FILE, RunSpec
from deepspark_core.datasets import MANIFEST, write_manifest
from deepspark_core.results import RESULT_FILE, Result
from deepspark_core.runset import raw_files
from deepspark_core.workload_spec import Preset, read_spec

MODEL_IMAGES = Path(__file__).resolve().parents[1] / "model_images"
SETUP = [
    "submission_benchmark", "framework", "seed", "init_start",
    "init_stop", "global_batch_size", "quality_metric", "run_start",
]  # fmt: skip


def spec(workload: str) -> dict[str, Any]:
    return tomllib.loads((MODEL_IMAGES / workload / "workload.toml").read_text())


def twin_presets(workload: str, names: list[str]) -> dict[str, Any]:
    """The named presets of a workload as its framework twin must share them: each
    implementation measures its own reference convergence, so that table is left out."""
    configs = spec(workload)["configs"]
    return {n: {k: v for k, v in configs[n].items() if k != "reference_convergence"} for n in names}


def preset(workload: str, config: str) -> Preset:
    """A preset as the library gives it to train scripts (wl.preset), of the workload's class."""
    return read_spec(MODEL_IMAGES / workload).configs[config]


def load_module(workload: str, name: str) -> ModuleType:
    """A module of the workload, imported under a name no other workload's module takes.

    Only train.py imports its siblings (model, data): the others import torch and
    deepspark_workload alone, so that tests can load each on its own.
    """
    path = MODEL_IMAGES / workload / f"{name}.py"
    module_spec = importlib.util.spec_from_file_location(f"{workload}_{name}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def parameters(model: Any) -> int:
    """A model's trainable parameters: torch's all, paddle's but BatchNorm's running mean and
    variance (paddle keeps them as parameters with trainable=False; torch as buffers). Counted
    from shapes, so that a model on torch's meta device or under paddle.LazyGuard counts too."""
    return sum(math.prod(p.shape) for p in model.parameters() if getattr(p, "trainable", True))


def environ(workload: str, out: Path, **env: str) -> dict[str, str]:
    """The agent's DS_* variables for a mini run writing to out, overridden by env."""
    return {
        **os.environ,
        # As the process runtime: the workloads folder, then the agent's own path.
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(MODEL_IMAGES), os.environ.get("PYTHONPATH")) if p
        ),
        "DS_CONTRACT_VERSION": "1",
        "DS_MODEL": spec(workload)["name"],
        "DS_CONFIG": "mini",
        "DS_OUT_DIR": str(out),
        # Mini models gain nothing from a second thread, and on a shared 2-core runner spinning
        # OpenMP threads multiply a run's time; torchrun sets 1 per rank on its own.
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        **env,
    }


def run(
    workload: str, out: Path, *, ranks: int = 1, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess:
    """train.py as the agent's process runtime starts it (runtime/base.py's argv): directly,
    or for several ranks through torchrun or the launcher its workload.toml names."""
    path = MODEL_IMAGES / workload
    run_spec = RunSpec(model=workload, config="mini", mode="speed", seed=0, nproc=ranks)
    command = argv(Launch(load_workload(path), run_spec, out), python=sys.executable)
    return subprocess.run(
        command, cwd=path, env=environ(workload, out, **env), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def events(out: Path) -> list[dict]:
    lines = (out / "mllog.log").read_text().splitlines()
    return [json.loads(line.removeprefix(":::MLLOG ")) for line in lines]


def keys_without_dataset(log: list[dict]) -> list[str]:
    return [e["key"] for e in log if e["key"] != "dataset"]


def converge(workload: str, out: Path, seed: int = 1, **env: str) -> list[dict]:
    """Train the mini config to convergence and check the run's events; return them.

    Checks: the contract's event order, one window and one evaluation per epoch (and the
    final weights' checkpoint where the workload has infer mode), full batches
    and the wait for them in every window, the generated data's digest, the last evaluation
    at or past the target in the metric's direction, and that MLCommons' parser reads the log
    without an error.
    """
    from mlperf_logging.compliance_checker.mlp_parser import parse_file

    result = run(workload, out, DS_MODE="converge", DS_SEED=str(seed), **env)
    assert result.returncode == 0, result.stderr[-3000:]
    log = events(out)
    preset, quality = spec(workload)["configs"]["mini"], spec(workload)["quality"]
    epochs = preset["epochs"]
    saved = ["checkpoint"] if "infer" in spec(workload).get("modes", []) else []  # for infer
    assert keys_without_dataset(log) == (
        SETUP + ["block_start", "block_stop", "eval_accuracy"] * epochs + saved + ["run_stop"]
    )
    (dataset,) = [e for e in log if e["key"] == "dataset"]
    assert len(dataset["metadata"]["sha256"]) == 64
    assert log.index(dataset) < [e["key"] for e in log].index("init_stop")
    assert all(e["metadata"]["rank"] == 0 and "mono_ns" in e["metadata"] for e in log)
    by_key = {e["key"]: e for e in log}
    assert by_key["seed"]["value"] == seed
    batch = int(env.get("DS_BATCH_SIZE", preset["batch_size"]))
    assert by_key["global_batch_size"]["value"] == batch
    metric = by_key["quality_metric"]
    assert metric["value"] == quality["metric"]
    assert metric["metadata"] == {
        "direction": quality["direction"],
        "target": preset["target"],
        "rank": 0,
        "mono_ns": metric["metadata"]["mono_ns"],
    }
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert [m["window"] for m in stops] == list(range(epochs))
    assert len({m["samples_count"] for m in stops}) == 1  # every epoch: the same full batches
    assert stops[0]["samples_count"] % batch == 0
    assert all(m["data_wait_ms"] >= 0 for m in stops)  # the loop's wait for data, every epoch
    evals = [e for e in log if e["key"] == "eval_accuracy"]
    assert [e["metadata"]["epoch_num"] for e in evals] == list(range(1, epochs + 1))
    final = evals[-1]["value"]
    if quality["direction"] == "higher":
        assert final >= preset["target"], [e["value"] for e in evals]
    else:
        assert final <= preset["target"], [e["value"] for e in evals]
    assert log[-1]["metadata"]["status"] == "success"
    assert result.stdout.count(":::MLLOG ") == len(log)
    lines, errors = parse_file(str(out / "mllog.log"), ruleset="6.1.0")
    assert len(lines) == len(log) and errors == []
    return log


def speed(workload: str, out: Path, *, ranks: int = 1, windows: int = 2, **env: str) -> list[dict]:
    """A short speed-mode run of the mini config (1 warmup window); check it; return its events."""
    result = run(workload, out, ranks=ranks, DS_MODE="speed", DS_WINDOWS=str(windows), **env)
    assert result.returncode == 0, result.stderr[-3000:]
    log = events(out)
    n = windows + 1
    assert keys_without_dataset(log) == SETUP + ["block_start", "block_stop"] * n + ["run_stop"]
    preset = spec(workload)["configs"]["mini"]
    batch = int(env.get("DS_BATCH_SIZE", preset["batch_size"])) * ranks
    samples = [e["metadata"]["samples_count"] for e in log if e["key"] == "block_stop"]
    assert samples == [preset["steps_per_window"] * batch] * n
    assert log[-1]["metadata"]["status"] == "success"
    return log


def infer(workload: str, out: Path, checkpoint: Path | None, **env: str) -> list[dict]:
    """A mini infer run (contract 1.1) with checkpoint's weights (None: random ones), checked
    as MLCommons' parser reads it; its events."""
    from mlperf_logging.compliance_checker.mlp_parser import parse_file

    weights = {"DS_CHECKPOINT": str(checkpoint)} if checkpoint else {}
    result = run(workload, out, DS_MODE="infer", DS_CONTRACT_VERSION="1.1", **weights, **env)
    assert result.returncode == 0, result.stderr[-3000:]
    log = events(out)
    assert log[-1]["metadata"]["status"] == "success"
    _, errors = parse_file(str(out / "mllog.log"), ruleset="6.1.0")
    assert errors == []
    return log


def final(log: list[dict], key: str = "eval_accuracy") -> dict:
    """The last event of key in log."""
    return [e for e in log if e["key"] == key][-1]


def inference_smoke(workload: str, run_set: Path) -> Result:
    """An inference-smoke entry's run set, checked: its converge run, then an offline and a
    latency run (eager) with that run's weights, each a success over 5 measured windows whose
    accuracy is the converge run's exactly (the same weights, the same split), with ordered
    latency percentiles over the preset's queries (steps_per_window batches a window offline,
    as many single samples in the latency scenario); the checkpoint kept, neither signed nor
    packed. Returns the result."""
    mini = spec(workload)["configs"]["mini"]
    result = Result.model_validate_json((run_set / RESULT_FILE).read_text())
    trained, *inferred = result.runs
    assert [r.label for r in inferred] == ["infer-offline-eager", "infer-latency-eager"]
    for run_ in inferred:
        assert run_.status == "success", run_.reason
        figures = run_.inference
        assert figures.weights_from == trained.label == "converge-1"
        assert figures.accuracy.value == trained.accuracy
        assert run_.speed.windows == 5
        assert figures.latency.p50_ms <= figures.latency.p90_ms <= figures.latency.p99_ms
    offline, single = (r.inference for r in inferred)
    queries = 5 * mini["steps_per_window"]
    assert (offline.batch_size, offline.latency.queries) == (mini["batch_size"], queries)
    assert (single.batch_size, single.latency.queries) == (1, queries * mini["batch_size"])
    weights = run_set / trained.label / CHECKPOINT_FILE
    assert weights.is_file() and weights not in raw_files(run_set)
    return result


def train_on(workload: str, preset_toml: str, data_dir: Path, out: Path) -> list[dict]:
    """One converge run of `workload` on a prepared dataset, with a small preset of its own.

    The workload's folder is copied beside out and `preset_toml` (a `[configs.tiny]` table and
    its subtables: the full preset's `data` with a model small enough for a CPU) appended to
    its workload.toml; train.py then runs as the agent starts it. Checks that the run succeeded
    and verified the dataset's manifest (not generated data); returns the events.
    """
    folder = out.parent / f"{out.name}-workload" / workload
    shutil.copytree(MODEL_IMAGES / workload, folder, ignore=shutil.ignore_patterns("__pycache__"))
    with (folder / "workload.toml").open("a") as toml:
        toml.write("\n" + preset_toml)
    out.mkdir(parents=True, exist_ok=True)
    env = environ(
        workload, out, DS_CONFIG="tiny", DS_MODE="converge", DS_DATA_DIR=str(data_dir.resolve())
    )
    result = subprocess.run(
        [sys.executable, "train.py"], cwd=folder, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    log = events(out)
    (dataset,) = [e for e in log if e["key"] == "dataset"]
    assert dataset["value"] == "SHA256SUMS" and dataset["metadata"]["files"] > 0
    assert [e["key"] for e in log].count("block_stop") >= 1
    assert log[-1]["metadata"]["status"] == "success"
    return log


class Counted:
    """A converter's Progress that keeps what it was told."""

    def __init__(self) -> None:
        self.expected: int | None = None
        self.done = 0

    def total(self, n: int) -> None:
        self.expected = n

    def advance(self, n: int = 1) -> None:
        self.done += n


def convert(workload: str, src: Path, dst: Path) -> Counted:
    """The workload's prepare.convert(src, dst): every unit of work it announced reported done;
    returns its progress."""
    progress = Counted()
    load_module(workload, "prepare").convert(src, dst, progress)
    assert progress.expected is not None and progress.done == progress.expected
    return progress


def prepare(workload: str, src: Path, dst: Path) -> Counted:
    """convert, then dst/SHA256SUMS, as `deepspark-agent data prepare` does."""
    progress = convert(workload, src, dst)
    write_manifest(dst)
    return progress


def tiny_preset(model: dict[str, Any], optim: dict[str, Any], **keys: Any) -> str:
    """train_on's `[configs.tiny]` as TOML: one epoch of batch 2 (one step a window), `keys`
    (the full preset's `data`, a target...; a dict is a subtable, like model and optim)."""
    extra = {key: value for key, value in keys.items() if isinstance(value, dict)}
    subtables = {"model": model, "optim": optim, **extra}
    keys = {key: value for key, value in keys.items() if key not in extra}
    preset = {"target": 0.0, "target_source": "none: a test's tiny preset", "batch_size": 2,
              "epochs": 1, "steps_per_window": 1, "max_seconds": 300, **keys}  # fmt: skip
    tables = {"configs.tiny": preset} | {f"configs.tiny.{k}": t for k, t in subtables.items()}
    return "".join(
        f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items())
        for name, table in tables.items()
    )  # JSON's numbers, strings and arrays are TOML's


def prepare_fails(workload: str, src: Path, match: str) -> None:
    """The workload's converter stops on src with a one-line PrepareError matching `match`."""
    from deepspark_workload.prepare import PrepareError

    with pytest.raises(PrepareError, match=match) as error:
        load_module(workload, "prepare").convert(src, src.parent / "out", Counted())
    assert "\n" not in str(error.value)


def prepare_resumes(workload: str, src: Path, dst: Path, kept: str, lost: str) -> None:
    """After a whole prepare, a run cut off while writing `lost`: a second run writes it again
    and leaves `kept` (already written) alone, ending with the same files as the first."""
    prepare(workload, src, dst)
    manifest, before = (dst / MANIFEST).read_text(), (dst / kept).stat().st_mtime_ns
    (dst / lost).unlink()
    (dst / lost).with_name(f".{Path(lost).name}.partial").write_bytes(b"cut off")
    prepare(workload, src, dst)
    assert (dst / kept).stat().st_mtime_ns == before and not list(dst.rglob("*.partial"))
    assert (dst / MANIFEST).read_text() == manifest
