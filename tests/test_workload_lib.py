"""The workload helper library: environment parsing, event lines, workload.toml presets."""

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import require
from deepspark_workload import ContractError, Env, MLLogger
from deepspark_workload.datasets import tensors_sha256
from deepspark_workload.text import edit_distance
from deepspark_workload.workload import load_spec

MODEL_IMAGES = Path(__file__).resolve().parents[1] / "model_images"
TINY_TOML = """
name = "tiny"
task = "test"
entrypoint = ["python", "train.py"]
[quality]
metric = "loss"
direction = "lower"
[configs.mini]
target = 0.1
batch_size = 4
max_seconds = 60
epochs = 1
steps_per_window = 3
"""


def test_env_defaults_and_values(tmp_path: Path) -> None:
    assert Env.from_environ({}) == Env()
    env = Env.from_environ(
        {
            "DS_MODEL": "resnet50",
            "DS_CONFIG": "full",
            "DS_MODE": "converge",
            "DS_BATCH_SIZE": "64",
            "DS_PRECISION": "bf16",
            "DS_SEED": "7",
            "DS_WARMUP_WINDOWS": "0",
            "DS_WINDOWS": "3",
            "DS_DATA_DIR": str(tmp_path),
            "DS_OUT_DIR": str(tmp_path / "out"),
            "DS_MAX_SECONDS": "90.5",
        }
    )
    assert (env.model, env.config, env.mode) == ("resnet50", "full", "converge")
    assert env.precision == "bf16"
    assert (env.batch_size, env.seed, env.warmup_windows, env.windows) == (64, 7, 0, 3)
    assert (env.data_dir, env.out_dir, env.max_seconds) == (tmp_path, tmp_path / "out", 90.5)
    assert Env.from_environ({"DS_BATCH_SIZE": ""}).batch_size is None  # empty means unset


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("DS_MODE", "train", "DS_MODE='train' is not one of speed, converge, infer"),
        ("DS_PRECISION", "fp8", "DS_PRECISION='fp8' is not one of fp32, amp, bf16"),
        ("DS_BATCH_SIZE", "0", "DS_BATCH_SIZE='0' must be >= 1"),
        ("DS_BATCH_SIZE", "3.5", "DS_BATCH_SIZE='3.5' is not int"),
        ("DS_SEED", "-1", "DS_SEED='-1' must be >= 0"),
        ("DS_SEED", str(2**32), "must be < 2**32"),
        ("DS_WINDOWS", "0", "DS_WINDOWS='0' must be >= 1"),
        ("DS_MAX_SECONDS", "nan", "DS_MAX_SECONDS='nan' must be >= 0"),
        ("DS_CONTRACT_VERSION", "2", "version 1"),
    ],
)
def test_env_rejects_bad_values(name: str, value: str, message: str) -> None:
    with pytest.raises(ContractError, match=re.escape(message)):
        Env.from_environ({name: value})


def test_env_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Env().seed = 1  # type: ignore[misc]


def test_logger_line_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = MLLogger(tmp_path / "out" / "mllog.log", rank=0)
    log.event("seed", 3)
    log.start("block_start", metadata={"window": 0})
    log.end("run_stop", metadata={"status": "success"})
    printed = capsys.readouterr().out.splitlines()
    written = (tmp_path / "out" / "mllog.log").read_text().splitlines()
    assert printed == written and len(written) == 3
    assert all(line.startswith(":::MLLOG {") for line in written)
    events = [json.loads(line.removeprefix(":::MLLOG ")) for line in written]
    keys = {"namespace", "time_ms", "event_type", "key", "value", "metadata"}
    assert all(set(e) == keys for e in events)
    assert [e["event_type"] for e in events] == ["POINT_IN_TIME", "INTERVAL_START", "INTERVAL_END"]
    assert events[0]["value"] == 3 and events[1]["metadata"]["window"] == 0
    assert all(isinstance(e["time_ms"], int) and e["metadata"]["rank"] == 0 for e in events)
    monotonic = [e["metadata"]["mono_ns"] for e in events]
    assert monotonic == sorted(monotonic)


def test_logger_only_rank_0_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    MLLogger(tmp_path / "mllog.log", rank=1).event("seed", 3)
    assert capsys.readouterr().out == "" and not (tmp_path / "mllog.log").exists()


def test_logger_reads_back_with_mlperf_parser(tmp_path: Path) -> None:
    from mlperf_logging.compliance_checker.mlp_parser import parse_file

    log = MLLogger(tmp_path / "mllog.log")
    log.event("submission_benchmark", "x")
    log.end("run_stop", metadata={"status": "aborted", "reason": "ValueError: bad"})
    lines, errors = parse_file(str(tmp_path / "mllog.log"), ruleset="6.1.0")
    assert len(lines) == 2 and errors == []


def test_spec_presets(tmp_path: Path) -> None:
    toml = tmp_path / "workload.toml"
    toml.write_text(TINY_TOML + "[configs.broken]\ntarget = 0.9\nbatch_size = 4\nmax_seconds = 1\n")
    spec, preset = load_spec(toml, "mini")
    assert spec.name == "tiny" and spec.quality.direction == "lower" and preset.batch_size == 4
    with pytest.raises(ContractError, match="has mini, broken"):
        load_spec(toml, "full")
    with pytest.raises(ContractError, match=r"\[configs.broken\] lacks epochs, steps_per_window"):
        load_spec(toml, "broken")
    toml.write_text(TINY_TOML.replace("batch_size", "batch_sise"))
    with pytest.raises(ContractError) as typo:
        load_spec(toml, "mini")
    assert str(typo.value) == f"{toml}: configs.mini.batch_sise: unknown key"


def test_library_imports_no_framework_until_workload_is_used() -> None:
    code = "import sys, deepspark_workload; assert not {'torch', 'paddle'} & set(sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(MODEL_IMAGES)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def run_tiny_workload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, leave_early: bool) -> list:
    """A linear model through Workload in this process; returns the logged events."""
    import torch

    from deepspark_workload import Workload

    (tmp_path / "workload.toml").write_text(TINY_TOML)
    monkeypatch.setenv("DS_OUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("DS_WINDOWS", "2")
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        with Workload.from_env(tmp_path / "train.py") as wl:
            model = wl.wrap(torch.nn.Linear(2, 1))
            optimizer = torch.optim.SGD(model.parameters(), 0.1)
            batches = [torch.randn(wl.batch_size, 2) for _ in range(2)]  # cycled: 3 steps/window
            assert wl.total_steps(batches) == 9
            wl.start()
            for window in wl.windows(batches):
                for x in window:
                    with wl.autocast():
                        loss = model(x).square().mean()
                    wl.step(loss, optimizer)
                    if leave_early:
                        break
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    lines = (tmp_path / "out" / "mllog.log").read_text().splitlines()
    return [json.loads(line.removeprefix(":::MLLOG ")) for line in lines]


def test_workload_speed_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = run_tiny_workload(tmp_path, monkeypatch, leave_early=False)
    keys = [e["key"] for e in events]
    assert keys[:8] == [
        "submission_benchmark", "framework", "seed", "init_start",
        "init_stop", "global_batch_size", "quality_metric", "run_start",
    ]  # fmt: skip
    assert keys[8:] == ["block_start", "block_stop"] * 3 + ["run_stop"]
    stops = [e["metadata"] for e in events if e["key"] == "block_stop"]
    assert [m["window"] for m in stops] == [0, 1, 2]
    assert all(m["samples_count"] == 3 * 4 for m in stops)
    assert events[-1]["metadata"]["status"] == "success"


def test_converge_windows_log_the_wait_for_data(tmp_path: Path, monkeypatch) -> None:
    """Each converge window's block_stop carries the time next() of the batches took: here a
    loader that sleeps 20 ms a batch, and training steps of 30 ms that the wait leaves out."""
    import time

    def slow(batches: list) -> Iterator:
        for batch in batches:
            time.sleep(0.02)
            yield batch

    monkeypatch.setenv("DS_MODE", "converge")
    toml = TINY_TOML.replace("epochs = 1", "epochs = 2")
    epochs = [[1, 2, 3], [4, 5, 6]]
    with tiny_workload(tmp_path, monkeypatch, toml=toml) as wl:
        wl.start()
        for window in wl.windows(_Epochs(epochs, slow)):
            seen = []
            for batch in window:
                seen.append(batch)
                time.sleep(0.03)
            assert seen == epochs[window.index]
    lines = (tmp_path / "out" / "mllog.log").read_text().splitlines()
    events = [json.loads(line.removeprefix(":::MLLOG ")) for line in lines]
    starts = [e["metadata"] for e in events if e["key"] == "block_start"]
    stops = [e["metadata"] for e in events if e["key"] == "block_stop"]
    assert [m["samples_count"] for m in stops] == [3 * 4, 3 * 4]
    for start, stop in zip(starts, stops, strict=True):
        window_ms = (stop["mono_ns"] - start["mono_ns"]) / 1e6
        assert stop["data_wait_ms"] >= 3 * 20  # three batches drawn
        assert window_ms - stop["data_wait_ms"] >= 3 * 30  # the steps are not waiting


class _Epochs:
    """Batches that differ by epoch (the windows say which through the sampler)."""

    def __init__(self, epochs: list[list[int]], wrap: Callable) -> None:
        self.epochs, self.wrap, self.epoch = epochs, wrap, 0
        self.sampler = self  # _one_pass calls sampler.set_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.epochs[0])

    def __iter__(self) -> Iterator:
        return self.wrap(self.epochs[self.epoch])


def test_speed_windows_log_no_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = run_tiny_workload(tmp_path, monkeypatch, leave_early=False)
    assert all("data_wait_ms" not in e["metadata"] for e in events)  # synthetic: no loader


def test_workload_left_window_aborts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="window 0 was left before its last batch"):
        run_tiny_workload(tmp_path, monkeypatch, leave_early=True)
    run_stop = json.loads((tmp_path / "out" / "mllog.log").read_text().splitlines()[-1][9:])
    assert run_stop["key"] == "run_stop"
    assert run_stop["metadata"]["status"] == "aborted"
    assert "window 0 was left" in run_stop["metadata"]["reason"]


@contextlib.contextmanager
def tiny_workload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, paddle: bool = False, toml: str = TINY_TOML
) -> Iterator[Any]:
    """A run of the tiny workload.toml (or toml) in this process, torch's Workload or paddle's."""
    if paddle:
        require("paddle")
        from deepspark_workload.paddle_workload import Workload
    else:
        from deepspark_workload import Workload

    (tmp_path / "workload.toml").write_text(toml)
    monkeypatch.setenv("DS_OUT_DIR", str(tmp_path / "out"))
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        with Workload.from_env(tmp_path / "train.py") as wl:
            yield wl
    finally:
        signal.signal(signal.SIGTERM, sigterm)


def test_step_clips_the_unscaled_gradient_norm(tmp_path: Path, monkeypatch) -> None:
    import torch

    with tiny_workload(tmp_path, monkeypatch) as wl:
        w = torch.nn.Parameter(torch.zeros(3))
        optimizer = torch.optim.SGD([w], lr=1.0)
        # gradient (30, 40, 0), norm 50: clipped to norm 5, (3, 4, 0); SGD steps against it
        wl.step((w * torch.tensor([30.0, 40.0, 0.0])).sum(), optimizer, clip=5.0)
        assert torch.allclose(w.detach(), torch.tensor([-3.0, -4.0, 0.0]))
        wl.step((w * torch.tensor([0.3, 0.4, 0.0])).sum(), optimizer, clip=5.0)  # under 5
        assert torch.allclose(w.detach(), torch.tensor([-3.3, -4.4, 0.0]))


# Logits whose argmaxes are 1, 2, 0 (a tie: the first wins), 2, and labels 1, 0, 0, 2 in two
# batches: right, wrong, right, right.
LOGITS = [[[0.1, 0.9, 0.0], [2.0, 1.0, 3.0]], [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]]
LABELS = [[1, 0], [0, 2]]


@pytest.mark.parametrize("paddle", [False, True], ids=["torch", "paddle"])
def test_top1_over_batches(tmp_path: Path, monkeypatch, paddle: bool) -> None:
    with tiny_workload(tmp_path, monkeypatch, paddle) as wl:
        if paddle:
            import paddle as framework

            net, tensor = framework.nn.Identity(), framework.to_tensor
        else:
            import torch as framework

            net, tensor = framework.nn.Identity(), framework.tensor
        batches = [(tensor(x), tensor(y)) for x, y in zip(LOGITS, LABELS, strict=True)]
        assert wl.top1(net, batches) == 0.75
        assert net.training  # evaluated in eval mode, then back to training


def test_evaluate_sums_both_sides_without_gradients(tmp_path: Path, monkeypatch) -> None:
    import torch

    with tiny_workload(tmp_path, monkeypatch) as wl:
        net, seen = torch.nn.Linear(1, 1), []

        def score(batch: float) -> tuple[float, float]:
            seen.append((net.training, torch.is_grad_enabled()))
            return batch, 2

        assert wl.evaluate(net, [1.0, 2.0, 3.0], score) == 6 / 6
        assert seen == [(False, False)] * 3 and net.training


def test_loader_workers_share_the_cpus_among_the_node_ranks(monkeypatch) -> None:
    from deepspark_workload.core import BaseWorkload

    class Paddle(BaseWorkload):
        LOCAL_SIZE_VARIABLE = "PADDLE_LOCAL_SIZE"

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    workload = object.__new__(BaseWorkload)  # loader_workers reads the environment alone
    assert workload.loader_workers() == 15  # every CPU but the rank's own: no fixed cap
    assert workload.loader_workers(most=4) == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(96)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert workload.loader_workers() == 11  # 12 CPUs a rank of 8 on a 96-core host
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert workload.loader_workers() == 3  # 4 CPUs a rank, one of them the rank's own
    monkeypatch.setenv("PADDLE_LOCAL_SIZE", "16")
    assert object.__new__(Paddle).loader_workers() == 1  # one CPU a rank: still one worker
    assert workload.loader_options() == {"num_workers": 3, "persistent_workers": True}


def test_generated_data_digest_covers_shape_dtype_and_values() -> None:
    import torch

    x = torch.arange(6, dtype=torch.float32)
    digest = tensors_sha256(x)
    assert digest == tensors_sha256(x.clone()) and len(digest) == 64
    assert digest != tensors_sha256(x.view(2, 3))
    assert digest != tensors_sha256(x.double())
    assert digest != tensors_sha256(x + 1e-6)
    assert tensors_sha256(x, x) != tensors_sha256(torch.cat([x, x]))
    assert tensors_sha256(torch.tensor([True, False])) != tensors_sha256(torch.tensor([1, 0]))


def _gather(rank: int, init: str, out: str) -> None:
    import torch
    import torch.distributed as dist

    from deepspark_workload.workload import gather_over_ranks

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    shards = [torch.tensor([0.1, 0.4, 0.35]), torch.tensor([0.8])]  # unequal, as last batches are
    torch.save(gather_over_ranks(shards[rank]), f"{out}.{rank}")
    dist.destroy_process_group()


def test_gather_over_two_ranks_in_rank_order(tmp_path: Path) -> None:
    import torch
    import torch.multiprocessing as mp

    out = str(tmp_path / "gathered")
    mp.spawn(_gather, args=(f"file://{tmp_path / 'store'}", out), nprocs=2)
    for rank in range(2):
        assert torch.load(f"{out}.{rank}").tolist() == pytest.approx([0.1, 0.4, 0.35, 0.8])


def test_edit_distance() -> None:
    assert edit_distance("kitten", "sitting") == 3  # k->s, e->i, +g
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "") == 3  # insert / delete all
    assert edit_distance("abc", "abc") == 0
    assert edit_distance("ab", "ba") == 2  # no transpositions in Levenshtein's distance
    assert edit_distance([1, 2, 3, 4], [1, 3, 4]) == 1  # drop the 2: lists of label ids too


def test_paddle_sampler_shuffles_by_seed_and_epoch() -> None:
    """paddle's own DistributedBatchSampler shuffles by the epoch alone; the library's mixes in
    the run's seed (as torch's DistributedSampler does), and windows() sets the epoch."""
    require("paddle")
    from paddle.io import DataLoader

    from deepspark_workload.core import _one_pass
    from deepspark_workload.paddle_workload import SeededBatchSampler

    data = list(range(20))

    def order(seed: int, epoch: int, rank: int = 0, ranks: int = 1) -> list[int]:
        sampler = SeededBatchSampler(data, 5, seed, ranks, rank, drop_last=True)
        loader = DataLoader(data, batch_sampler=sampler)
        return [i for batch in _one_pass(loader, epoch) for i in batch.tolist()]

    assert order(7, 0) == order(7, 0) and sorted(order(7, 0)) == data
    assert order(7, 0) != order(7, 1) and order(7, 0) != order(8, 0)
    halves = order(7, 0, 0, 2) + order(7, 0, 1, 2)  # two ranks: disjoint shares of one order
    assert sorted(halves) == data


def test_warmup_cosine_schedule() -> None:
    from deepspark_workload.schedules import warmup_cosine

    factor = warmup_cosine(0.1, 100)  # 10 warmup steps of 100
    assert factor(0) == pytest.approx(0.1)  # 1/10 of the way up, cosine still ~1
    assert factor(9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.09)))  # warmup done
    assert factor(50) == pytest.approx(0.5)  # halfway down the cosine
    assert 0 < factor(99) < 1e-3  # next to zero at the end
    assert warmup_cosine(0.0, 10)(0) == pytest.approx(1.0)  # no warmup asked: one step of it


# The schedules as the workloads wrote them inline before the library had them: the library's
# must give the very same factors, so that no run's learning rate moves by a bit.
def _inline(name: str, fraction: float, total: int) -> Callable[[int], float]:
    warmup = max(1, round(fraction * total))
    decay, milestones = round(0.5 * total), [round(0.3 * total), round(0.7 * total)]
    return {
        "cosine": lambda s: min(1, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / total)),
        "linear": lambda s: min(
            (s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))
        ),  # BERT
        "rsqrt": lambda s: min((s + 1) / warmup, math.sqrt(warmup / (s + 1))),  # Conformer
        "poly": lambda s: min((s + 1) / warmup, 1, ((total - s) / (total - decay)) ** 2),  # DLRM
        "steps": lambda s: min(1, (s + 1) / warmup) * 0.1 ** sum(s >= d for d in milestones),
        "to_lrf": lambda s: min(1, (s + 1) / warmup) * (1 - (1 - 0.01) * s / total),  # YOLOv5
    }[name]


@pytest.mark.parametrize("total", [3, 10, 97, 1000])
@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.3])
def test_schedules_give_the_workloads_former_factors(total: int, fraction: float) -> None:
    from deepspark_workload import schedules as sch

    decay, milestones = round(0.5 * total), [round(0.3 * total), round(0.7 * total)]
    library = {
        "cosine": sch.warmup_cosine(fraction, total),
        "linear": sch.warmup_linear(fraction, total),
        "rsqrt": sch.warmup_rsqrt(fraction, total),
        "poly": sch.warmup(fraction, total, lambda s: min(1, ((total - s) / (total - decay)) ** 2)),
        "steps": sch.warmup(fraction, total, sch.step_decay(milestones, 0.1)),
        "to_lrf": sch.warmup(fraction, total, lambda s: 1 - (1 - 0.01) * s / total),
    }
    for name, factor in library.items():
        if name == "poly" and sch.warmup_steps(fraction, total) > decay:
            continue  # DLRM's decay starts after its warmup (its presets: 0.05, then 0.5)
        inline = _inline(name, fraction, total)
        assert [factor(s) for s in range(total)] == [inline(s) for s in range(total)], name
