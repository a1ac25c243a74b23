"""The framework-free half of a workload run: what every framework's `Workload` shares.

workload.toml read through deepspark_core's schema (the workload's own Preset), the model built
from the preset's [model] table, seeding of `random` and numpy, the timed windows and their
MLLOG events, SIGTERM as an aborted run_stop, the data checks, the DataLoader workers and the
evaluation loop. A framework's `Workload` (workload.py for PyTorch, paddle_workload.py for
PaddlePaddle) subclasses `BaseWorkload` and fills in the device, the process group, precision,
gradients off, the sum over ranks and the optimizer step; this module imports neither
framework.
"""

import inspect
import itertools
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self, TypeVar

from deepspark_core.contract import (
    CHECKPOINT_EVENT,
    CHECKPOINT_FILE,
    LATENCIES_PER_EVENT,
    LATENCY_EVENT,
    RANDOM_WEIGHTS,
    SYNTHETIC_DATA,
    WEIGHTS_EVENT,
)
from deepspark_core.datasets import (
    MANIFEST,
    VERIFIED_ENV,
    DatasetError,
    check_present,
    file_sha256,
    manifest_digest,
    verify_manifest,
)
from deepspark_core.workload_spec import Preset, WorkloadError, WorkloadSpec, read_spec

from .datasets import arrays_sha256
from .env import ContractError, Env
from .mllog import MLLogger

RUN_KEYS = ("epochs", "steps_per_window")  # optional for the agent, needed for a run
_END = object()  # the end of a window's batches
T = TypeVar("T")


class Terminated(BaseException):
    """SIGTERM, raised where the main thread is, so that the run logs its abort on the way out."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated("SIGTERM")


def _abort(log: MLLogger, exc: BaseException) -> None:
    reason = type(exc).__name__ + (f": {exc}" if str(exc) else "")
    log.end("run_stop", metadata={"status": "aborted", "reason": reason.splitlines()[0][:500]})


def seed_everything(seed: int) -> None:
    """Python's and numpy's global generators (a framework seeds its own on top)."""
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:
        pass
    else:
        np.random.seed(seed)


def load_spec(path: Path, config: str) -> tuple[WorkloadSpec, Preset]:
    """workload.toml, and its preset [configs.<config>], of the workload's own Preset class."""
    try:
        spec = read_spec(path.parent)
    except WorkloadError as exc:
        raise ContractError(str(exc)) from None
    if config not in spec.configs:
        have = ", ".join(spec.configs) or "no presets"
        raise ContractError(f"DS_CONFIG={config!r}: {path} has {have}")
    preset = spec.configs[config]
    missing = [k for k in RUN_KEYS if getattr(preset, k) is None]
    if missing:
        raise ContractError(f"{path}: [configs.{config}] lacks {', '.join(missing)}")
    return spec, preset


class BaseWorkload(AbstractContextManager):
    """One run of a workload: what the agent asked for, where it runs, and what it logs.

    A subclass sets RANK_VARIABLES and LOCAL_SIZE_VARIABLE (how its launcher names this
    process's rank, the world size and the ranks on this node) and implements _setup (device,
    process group, the framework's seeding), framework (the `framework` event's value),
    device_type, _sync, _teardown, no_grad, autocast and sum_over_ranks.
    """

    RANK_VARIABLES = ("RANK", "WORLD_SIZE")  # torchrun's
    LOCAL_SIZE_VARIABLE = "LOCAL_WORLD_SIZE"
    device_type: str  # "cpu", "cuda", "gpu", ...: the `framework` event's metadata

    def __init__(self, env: Env, toml_path: Path, log: MLLogger) -> None:
        self.env, self.log, self.toml_path = env, log, toml_path
        self.spec, self.preset = load_spec(toml_path, env.config)
        self.name = self.spec.name
        if env.model not in (None, self.name):
            raise ContractError(f"DS_MODEL={env.model!r}, but {toml_path} is {self.name!r}")
        try:  # a mode the workload does not run: refused at once, in one line
            self.spec.check_mode(env.mode)
        except WorkloadError as exc:
            raise ContractError(str(exc)) from None
        self.converge, self.infer = env.mode == "converge", env.mode == "infer"
        self.latency = self.infer and env.scenario == "latency"  # single-stream: batch 1
        # Per device. A latency run's queries are of one sample; its evaluation keeps the run's
        # batch (eval_batch_size), so it computes what a converge run's evaluation computed.
        self.eval_batch_size: int = env.batch_size or self.preset.batch_size
        self.batch_size: int = 1 if self.latency else self.eval_batch_size
        rank, world_size = self.RANK_VARIABLES
        self.rank = int(os.environ.get(rank, 0))
        self.world_size = int(os.environ.get(world_size, 1))
        if self.infer and self.world_size > 1:
            raise ContractError(f"DS_MODE=infer measures one device, not {self.world_size} ranks")
        self.global_batch_size = self.batch_size * self.world_size
        self._setup()
        seed_everything(env.seed)
        self.windows_done = 0
        log.event("submission_benchmark", self.name)
        log.event("framework", self.framework(), {"device": self.device_type})
        log.event("seed", env.seed)
        log.start("init_start")
        self._data_root: Path | None = None
        # A dataset preset's files: converge runs read them; infer runs score their evaluation
        # split when given one, else time synthetic batches (and log no accuracy)
        self.reads_data = self.converge or (self.infer and env.data_dir is not None)
        if self.preset.real_data:  # before the train script builds a model
            if self.reads_data:
                self.data_dir()  # a missing or damaged dataset fails now, not hours in
            else:
                self.log_synthetic("random batches of the preset's shapes")

    # What a framework fills in.
    def _setup(self) -> None:
        """Pick the device, join the process group, seed the framework's generators."""
        raise NotImplementedError

    def framework(self) -> str:
        """Name and version, e.g. 'pytorch 2.13.0'."""
        raise NotImplementedError

    def _sync(self) -> None:
        """Wait for the device's queued work (the windows' clock must not run ahead of it)."""

    def _teardown(self) -> None:
        """Leave the process group after a successful run."""

    def no_grad(self) -> AbstractContextManager:
        """The framework's context without gradient tracking."""
        raise NotImplementedError

    def autocast(self) -> AbstractContextManager:
        """The forward pass's precision."""
        raise NotImplementedError

    def sum_over_ranks(self, *values: float) -> list[float]:
        """Each value summed over all ranks."""
        raise NotImplementedError

    def _save_weights(self, net: Any, path: Path) -> None:
        """Write net's weights to path (the framework's own format)."""
        raise NotImplementedError

    def _load_weights(self, net: Any, path: Path) -> None:
        """Load weights that _save_weights wrote into net."""
        raise NotImplementedError

    def _engine(self, net: Any) -> Any:
        """net, run by DS_ENGINE's engine (eager: net itself)."""
        raise NotImplementedError

    @classmethod
    def from_env(cls, train_file: str | Path) -> Self:
        """Set up the run described by the DS_* variables and the workload.toml beside train_file.

        A bad setting is logged as an aborted run and ends the process with its message.
        """
        out_dir = os.environ.get("DS_OUT_DIR", "").strip()
        rank = int(os.environ.get(cls.RANK_VARIABLES[0], 0))
        log = MLLogger(Path(out_dir) / "mllog.log" if out_dir else None, rank)
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
        self._teardown()
        if self.world_size > 1:
            # The run is done and logged (every line is written and flushed as it is logged).
            # A DDP model still holds its process group after destroy_process_group, and the
            # group's gloo threads then end in interpreter finalization, which under load can
            # abort a rank that succeeded (SIGABRT, "terminate called without an active
            # exception"; seen twice in CI on 2 ranks, never on demand). Leave without
            # finalization.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    def build_model(self, factory: Callable[..., T], **extra: Any) -> T:
        """factory(**the preset's [model] table, **extra), the table's keys checked against
        factory's signature first: an unknown or missing argument names the file."""
        args = {**self.preset.model, **extra}
        try:
            inspect.signature(factory).bind(**args)
        except TypeError as exc:
            where = f"{self.toml_path}: [configs.{self.env.config}.model]"
            raise ContractError(f"{where}: {factory.__name__}() {exc}") from None
        return factory(**args)

    def data_dir(self) -> Path:
        """DS_DATA_DIR, every file checked against its SHA256SUMS (once a run); logs which
        data this is."""
        if self._data_root is not None:
            return self._data_root
        root = self.env.data_dir
        if root is None:
            raise ContractError(
                f"converge mode on the {self.env.config} config needs DS_DATA_DIR "
                f"(a dataset with a {MANIFEST} manifest: docs/workload-contract.md)"
            )
        try:
            digest, files = self._verified(root)
        except DatasetError as exc:
            raise ContractError(str(exc)) from None
        self.log.event("dataset", MANIFEST, {"sha256": digest, "files": files})
        self._data_root = root
        return root

    def _verified(self, root: Path) -> tuple[str, int]:
        """The manifest's digest and file count. The agent verified the data before starting
        the ranks when DS_DATA_VERIFIED is the manifest's digest: then every listed file is
        only checked to be there. A run by hand hashes every file on rank 0 (no cache: it
        checks in full); the other ranks check presence only and meet rank 0 at the first
        collective, so a dataset too large to hash within the process group's timeout is
        verified first with `deepspark-agent data verify DIR`, which prints the digest to set."""
        if self.rank != 0 or manifest_digest(root) == os.environ.get(VERIFIED_ENV, "").strip():
            return check_present(root)
        return verify_manifest(root, cache=False)

    def log_synthetic(self, generator: str, sha256: str | None = None) -> None:
        """Log that the run trains on data it makes itself: what made it and, when the data
        is fixed (not drawn by the run's seed), its digest."""
        digest = {} if sha256 is None else {"sha256": sha256}
        self.log.event("dataset", SYNTHETIC_DATA, {"generator": generator, **digest, "files": 0})

    def log_generated_arrays(self, name: str, *arrays: Any) -> None:
        """Log the identity of data made by the run itself (numpy arrays): name and sha256.

        The digest depends on shapes, dtypes and bytes alone, so twins in two frameworks that
        generate the same data log the same digest."""
        self.log_synthetic(name, arrays_sha256(*arrays))

    def loader_workers(self, most: int | None = None) -> int:
        """DataLoader worker processes for this rank: its share of the CPUs this process may
        use (the node's ranks share them), less one for the rank itself; at least 1, at most
        `most` (None: no cap, so decoding on the CPU gets every core the rank has)."""
        ranks = int(os.environ.get(self.LOCAL_SIZE_VARIABLE, 1))
        share = len(os.sched_getaffinity(0)) // ranks - 1
        return max(1, share if most is None else min(most, share))

    def loader_options(self, most_workers: int | None = None) -> dict[str, Any]:
        """A DataLoader's options for data read from files: loader_workers of them, kept from
        epoch to epoch (no worker start-up inside every epoch's window)."""
        return {"num_workers": self.loader_workers(most_workers), "persistent_workers": True}

    def log_data_loader(self, decode: str, workers: int) -> None:
        """Log how the run turns its files into batches (the `data_loader` event), once, where
        the choice is made: the decoder ("pillow", "gpu-nvjpeg", "dali") and the workers."""
        self.log.event("data_loader", f"{decode} x{workers} workers", {"workers": workers})

    def evaluate(
        self, net: Any, batches: Iterable, score: Callable[[Any], tuple[float, float]]
    ) -> float:
        """A ratio of two sums over every rank's batches, e.g. correct answers over samples.

        score(batch) gives the batch's share of both; it runs under no_grad and autocast, with
        net in evaluation mode (back in training mode afterwards)."""
        net.eval()
        hits = count = 0
        with self.no_grad():
            for batch in batches:
                with self.autocast():
                    h, n = score(batch)
                hits, count = hits + h, count + n
        net.train()
        hits, count = self.sum_over_ranks(hits, count)
        return hits / count

    def start(self) -> None:
        """End initialisation and start the run's clock."""
        self._sync()
        self.log.end("init_stop")
        self.log.event("global_batch_size", self.global_batch_size)
        quality = self.spec.quality
        self.log.event(
            "quality_metric",
            quality.metric,
            {"direction": quality.direction, "target": self.preset.target},
        )
        self.log.start("run_start")

    def total_steps(self, batches: Iterable) -> int:
        """Optimizer steps that windows(batches) will run (for learning-rate schedules)."""
        if self.converge:
            return self.preset.epochs * len(batches)
        return (self.env.warmup_windows + self.env.windows) * self.window_steps

    @property
    def window_steps(self) -> int:
        """Steps (batches) in a speed or infer window: the preset's steps_per_window; in the
        latency scenario as many samples as an offline window's, one query each."""
        steps = self.preset.steps_per_window or 0
        return steps * self.eval_batch_size if self.latency else steps

    def windows(self, batches: Iterable) -> Iterator["Window"]:
        """The run's timed windows over batches, which must hold batch_size samples each.

        converge: one window per epoch, a full pass over batches, for the preset's epochs.
        speed and infer: DS_WARMUP_WINDOWS + DS_WINDOWS windows of window_steps batches,
        cycling through batches (which may be endless, e.g. itertools.repeat).
        """
        if self.converge:
            passes: Iterator[Iterable] = (
                _one_pass(batches, epoch) for epoch in range(self.preset.epochs)
            )
        else:
            stream = itertools.chain.from_iterable(
                _one_pass(batches, epoch) for epoch in itertools.count()
            )
            steps = self.window_steps
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

    def save_checkpoint(self, net: Any) -> None:
        """A converge run's final weights, for infer runs to load: $DS_OUT_DIR/checkpoint.pt
        on rank 0 (written whole, then renamed), its sha256 logged (`checkpoint`). Nothing
        without DS_OUT_DIR (a run by hand)."""
        if self.rank != 0 or self.env.out_dir is None:
            return
        path = self.env.out_dir / CHECKPOINT_FILE
        partial = path.with_name(path.name + ".partial")
        self._save_weights(net, partial)
        os.replace(partial, path)
        self.log.event(CHECKPOINT_EVENT, CHECKPOINT_FILE, {"sha256": file_sha256(path)})

    def load_checkpoint(self, net: Any, start: Path | None = None, name: str = "") -> None:
        """Weights into net, logged (`weights`: `checkpoint` and the file's sha256).

        Infer mode: DS_CHECKPOINT's; without one net keeps its seeded random weights, logged as
        `random`. Training: start, the checkpoint the run starts from instead of random
        weights, which the row names (`name`, e.g. "phase-1"), loaded before wl.wrap."""
        path = start or self.env.checkpoint
        if path is None:
            self.log.event(WEIGHTS_EVENT, RANDOM_WEIGHTS)
            return
        if not path.is_file():
            where = "the preset's initial checkpoint" if start else "DS_CHECKPOINT"
            raise ContractError(f"{where} {str(path)!r} is not a file")
        self._load_weights(net, path)
        named = {"name": name} if name else {}
        digest = file_sha256(path) if self.rank == 0 else ""  # only rank 0 logs
        self.log.event(WEIGHTS_EVENT, "checkpoint", {"sha256": digest, **named})

    def inference(
        self,
        net: Any,
        batches: Iterable,
        query: Callable[[Any, Any], Any],
        evaluate: Callable[[Any], float] | None = None,
    ) -> None:
        """Infer mode, whole: DS_CHECKPOINT's weights (or random ones) into net, DS_ENGINE's
        engine, one warm-up query (compilation happens there, during init), then the timed
        windows and the quality metric.

        batches: full batches of queries, cycled (in the latency scenario, of one sample);
        query(model, batch): one query (inputs to the device, the forward pass), timed from
        the batch in hand until the device finished it; evaluate(model): the quality metric
        over the whole evaluation set with the same engine (None: no labelled data, so no
        eval_accuracy). A window holds steps_per_window batches offline, and as many samples,
        one query each, in the latency scenario; after each block_stop its queries'
        latencies are logged as `infer_latency` events.
        """
        self.load_checkpoint(net)
        net.eval()
        model = self._engine(net)
        with self.no_grad(), self.autocast():
            query(model, next(iter(batches)))
            self._sync()
            self.start()
            for window in self.windows(batches):
                latencies = []
                for batch in window:
                    began = time.monotonic_ns()
                    query(model, batch)
                    self._sync()
                    latencies.append(round((time.monotonic_ns() - began) / 1e6, 4))
                self._log_latencies(window.index, latencies)
        if evaluate is not None:
            self.log_eval(evaluate(model))

    def _log_latencies(self, window: int, latencies: list[float]) -> None:
        """A window's query latencies (ms), LATENCIES_PER_EVENT to a line."""
        for i in range(0, len(latencies), LATENCIES_PER_EVENT):
            chunk = latencies[i : i + LATENCIES_PER_EVENT]
            self.log.event(LATENCY_EVENT, len(chunk), {"window": window, "latency_ms": chunk})


def _nothing() -> None:
    pass


def _one_pass(batches: Iterable, epoch: int) -> Iterator:
    """One pass over batches, telling a distributed sampler the epoch it reshuffles by:
    torch's DataLoader holds it as .sampler, paddle's as .batch_sampler."""
    for holder in ("sampler", "batch_sampler"):
        set_epoch = getattr(getattr(batches, holder, None), "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
    empty = True
    for batch in batches:
        empty = False
        yield batch
    if empty:
        raise ValueError("the training data gave no batch")


class Window:
    """One timed block of training steps. Iterate it for its batches; evaluate after it."""

    def __init__(self, workload: BaseWorkload, index: int, batches: Iterable) -> None:
        self.workload, self.index, self.batches, self.steps = workload, index, batches, 0

    def __iter__(self) -> Iterator:
        wl = self.workload
        wl._sync()  # the clock starts once earlier device work is done ...
        wl.log.start("block_start", metadata={"window": self.index})
        batches, waited_ns = iter(self.batches), 0
        # Converge and infer runs read real data, and time the wait for each batch between two
        # syncs: the device has finished its queued steps (a wait is not hidden behind them)
        # and whatever the loader queued on it (a decode on the GPU is the loader's time).
        # Speed runs reuse one batch: nothing to wait for, and no sync per step to perturb them.
        measured = wl.converge or wl.infer
        timed = wl._sync if measured else _nothing
        while True:
            timed()
            began = time.monotonic_ns()
            batch = next(batches, _END)
            timed()
            waited_ns += time.monotonic_ns() - began
            if batch is _END:
                break
            yield batch
            self.steps += 1
        wl._sync()  # ... and stops once this window's work is
        stop = {"window": self.index, "samples_count": self.steps * wl.global_batch_size}
        if measured:
            stop["data_wait_ms"] = round(waited_ns / 1e6, 3)
        wl.log.end("block_stop", metadata=stop)
        wl.windows_done += 1
