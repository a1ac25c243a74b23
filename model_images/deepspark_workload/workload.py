"""The workload side of the contract for PyTorch: setup, seeding, DDP, precision, timed windows.

A train.py reads:

with Workload.from_env(__file__) as wl:   # env, workload.toml, seed, devices; init_start
    model = wl.wrap(Net(**wl.preset["model"]))
    wl.start()                            # init_stop ... run_start
    for window in wl.windows(batches):    # block_start/block_stop around each window
        for x, y in window:
            with wl.autocast():
                loss = ...
            wl.step(loss, optimizer)
        if wl.converge:
            wl.log_eval(evaluate(model))
# run_stop: success, or aborted with the reason if anything raised (SIGTERM included)
"""

import itertools
import os
import random
import signal
import tomllib
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from .datasets import MANIFEST, tensors_sha256, verify_manifest
from .env import ContractError, Env
from .mllog import MLLogger

PRESET_KEYS = ("target", "batch_size", "epochs", "steps_per_window")
DIRECTIONS = ("higher", "lower")


class Terminated(BaseException):
    """SIGTERM, raised where the main thread is, so that the run logs its abort on the way out."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated("SIGTERM")


def _abort(log: MLLogger, exc: BaseException) -> None:
    reason = type(exc).__name__ + (f": {exc}" if str(exc) else "")
    log.end("run_stop", metadata={"status": "aborted", "reason": reason.splitlines()[0][:500]})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:
        pass
    else:
        np.random.seed(seed)
    torch.manual_seed(seed)  # every device's generator too


def load_spec(path: Path, config: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """workload.toml, and its preset [configs.<config>]."""
    with path.open("rb") as f:
        spec = tomllib.load(f)
    presets = spec.get("configs", {})
    if config not in presets:
        have = ", ".join(presets) or "no presets"
        raise ContractError(f"DS_CONFIG={config!r}: {path} has {have}")
    quality = spec.get("quality", {})
    if "name" not in spec or "metric" not in quality or quality.get("direction") not in DIRECTIONS:
        raise ContractError(f"{path} needs a name and [quality] metric, direction higher|lower")
    preset = presets[config]
    missing = [k for k in PRESET_KEYS if k not in preset]
    if missing:
        raise ContractError(f"{path}: [configs.{config}] lacks {', '.join(missing)}")
    return spec, preset


class Workload(AbstractContextManager["Workload"]):
    """One run of a workload: what the agent asked for, where it runs, and what it logs."""

    def __init__(self, env: Env, toml_path: Path, log: MLLogger) -> None:
        self.env, self.log = env, log
        self.spec, self.preset = load_spec(toml_path, env.config)
        self.name: str = self.spec["name"]
        if env.model not in (None, self.name):
            raise ContractError(f"DS_MODEL={env.model!r}, but {toml_path} is {self.name!r}")
        self.batch_size: int = env.batch_size or self.preset["batch_size"]  # per device
        self.converge = env.mode == "converge"
        self.rank = int(os.environ.get("RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.global_batch_size = self.batch_size * self.world_size
        if torch.cuda.is_available():
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if self.world_size > 1:
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        seed_everything(env.seed)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=env.precision == "amp")
        self.windows_done = 0
        log.event("submission_benchmark", self.name)
        log.event("framework", f"pytorch {torch.__version__}", {"device": self.device.type})
        log.event("seed", env.seed)
        log.start("init_start")

    @classmethod
    def from_env(cls, train_file: str | Path) -> "Workload":
        """Set up the run described by the DS_* variables and the workload.toml beside train_file.

        A bad setting is logged as an aborted run and ends the process with its message.
        """
        out_dir = os.environ.get("DS_OUT_DIR", "").strip()
        log = MLLogger(
            Path(out_dir) / "mllog.log" if out_dir else None, int(os.environ.get("RANK", 0))
        )
        signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return cls(Env.from_environ(), Path(train_file).with_name("workload.toml"), log)
        except BaseException as exc:
            _abort(log, exc)
            if isinstance(exc, ContractError):
                raise SystemExit(f"error: {exc}") from None
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            _abort(self.log, exc)
            if isinstance(exc, ContractError):
                raise SystemExit(f"error: {exc}") from None
            return  # the exception goes on, and the process exits non-zero
        self._sync()
        self.log.end("run_stop", metadata={"status": "success"})
        if dist.is_initialized():
            dist.destroy_process_group()

    def wrap(self, model: nn.Module) -> nn.Module:
        """Move model to the run's device; wrap it in DDP when the run spans processes."""
        model = model.to(self.device)
        if self.world_size == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def loader(
        self, dataset: Dataset, train: bool, batch_size: int | None = None, **kwargs: Any
    ) -> DataLoader:
        """This rank's share of dataset in batches of batch_size (default: the run's).

        train: shuffled by the seed, reshuffled every epoch, short tails dropped so that
        every step is a full global batch (windows count samples as steps x global batch).
        Otherwise every sample once over all ranks, in order (batch_size=1 for samples of
        different shapes).
        """
        batch_size = batch_size or self.batch_size
        if train:
            sampler = DistributedSampler(
                dataset, self.world_size, self.rank, seed=self.env.seed, drop_last=True
            )
            return DataLoader(dataset, batch_size, sampler=sampler, drop_last=True, **kwargs)
        shard = Subset(dataset, range(self.rank, len(dataset), self.world_size))
        return DataLoader(shard, batch_size, **kwargs)

    def data_dir(self) -> Path:
        """DS_DATA_DIR, every file checked against its SHA256SUMS; logs which data this is."""
        root = self.env.data_dir
        if root is None:
            raise ContractError(
                f"converge mode on the {self.env.config} config needs DS_DATA_DIR "
                f"(a dataset with a {MANIFEST} manifest: docs/workload-contract.md)"
            )
        digest, files = verify_manifest(root)
        self.log.event("dataset", MANIFEST, {"sha256": digest, "files": files})
        return root

    def log_generated_data(self, name: str, *tensors: torch.Tensor) -> None:
        """Log the identity of data made by the run itself (mini configs): name and sha256."""
        self.log.event("dataset", name, {"sha256": tensors_sha256(*tensors), "files": 0})

    def autocast(self) -> torch.autocast:
        """The forward pass's precision: fp32, fp16 (amp) or bf16 autocast."""
        dtype = {"amp": torch.float16, "bf16": torch.bfloat16}.get(self.env.precision)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def step(
        self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, clip: float | None = None
    ) -> None:
        """Backward pass and optimizer step, with loss scaling under amp; clip: the largest
        gradient norm (over all of the optimizer's parameters), measured unscaled."""
        self.scaler.scale(loss).backward()
        if clip is not None:
            self.scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            nn.utils.clip_grad_norm_(params, clip)
        self.scaler.step(optimizer)
        self.scaler.update()
        optimizer.zero_grad(set_to_none=True)

    def sum_over_ranks(self, *values: float) -> list[float]:
        """Each value summed over all ranks (e.g. correct answers and samples at evaluation)."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.world_size > 1:
            dist.all_reduce(t)
        return t.tolist()

    def gather_over_ranks(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's 1-D t (of any length) concatenated in rank order, on every rank: for
        metrics that are no sum over samples (AUC, mAP)."""
        return gather_over_ranks(t)

    def start(self) -> None:
        """End initialisation and start the run's clock."""
        self._sync()
        self.log.end("init_stop")
        self.log.event("global_batch_size", self.global_batch_size)
        quality = self.spec["quality"]
        self.log.event(
            "quality_metric",
            quality["metric"],
            {"direction": quality["direction"], "target": self.preset["target"]},
        )
        self.log.start("run_start")

    def total_steps(self, batches: Iterable) -> int:
        """Optimizer steps that windows(batches) will run (for learning-rate schedules)."""
        if self.converge:
            return self.preset["epochs"] * len(batches)
        return (self.env.warmup_windows + self.env.windows) * self.preset["steps_per_window"]

    def windows(self, batches: Iterable) -> Iterator["Window"]:
        """The run's timed windows over batches, which must hold batch_size samples each.

        converge: one window per epoch, a full pass over batches, for the preset's epochs.
        speed: DS_WARMUP_WINDOWS + DS_WINDOWS windows of the preset's steps_per_window,
        cycling through batches (which may be endless, e.g. itertools.repeat).
        """
        if self.converge:
            passes: Iterator[Iterable] = (
                _one_pass(batches, epoch) for epoch in range(self.preset["epochs"])
            )
        else:
            stream = itertools.chain.from_iterable(
                _one_pass(batches, epoch) for epoch in itertools.count()
            )
            steps = self.preset["steps_per_window"]
            n = self.env.warmup_windows + self.env.windows
            passes = (itertools.islice(stream, steps) for _ in range(n))
        for index, window_batches in enumerate(passes):
            window = Window(self, index, window_batches)
            yield window
            if self.windows_done != index + 1:
                raise RuntimeError(f"window {index} was left before its last batch")

    def log_eval(self, value: float) -> None:
        """Log the quality metric; epoch_num is the number of windows (epochs) done."""
        self.log.event("eval_accuracy", value, {"epoch_num": self.windows_done})

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def gather_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """Every rank's 1-D t concatenated in rank order, on every rank (t itself without DDP)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return t
    n = torch.tensor([len(t)], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    longest = int(max(sizes))  # all_gather wants equal shapes: pad, then cut
    padded = [t.new_zeros(longest) for _ in sizes]
    dist.all_gather(padded, torch.cat([t, t.new_zeros(longest - len(t))]))
    return torch.cat([p[: int(size)] for p, size in zip(padded, sizes, strict=True)])


def _one_pass(batches: Iterable, epoch: int) -> Iterator:
    """One pass over batches, telling a DistributedSampler the epoch it reshuffles by."""
    sampler = getattr(batches, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    empty = True
    for batch in batches:
        empty = False
        yield batch
    if empty:
        raise ValueError("the training data gave no batch")


class Window:
    """One timed block of training steps. Iterate it for its batches; evaluate after it."""

    def __init__(self, workload: Workload, index: int, batches: Iterable) -> None:
        self.workload, self.index, self.batches, self.steps = workload, index, batches, 0

    def __iter__(self) -> Iterator:
        wl = self.workload
        wl._sync()  # the clock starts once earlier device work is done ...
        wl.log.start("block_start", metadata={"window": self.index})
        for batch in self.batches:
            yield batch
            self.steps += 1
        wl._sync()  # ... and stops once this window's work is
        samples = self.steps * wl.global_batch_size
        wl.log.end("block_stop", metadata={"window": self.index, "samples_count": samples})
        wl.windows_done += 1
