"""The workload side of the contract for PaddlePaddle: devices, DataParallel, precision, the step.

A train.py reads as a PyTorch one does (workload.py), with paddle's model and optimizer:

with Workload.from_env(__file__) as wl:   # env, workload.toml, seed, device; init_start
    model = wl.wrap(wl.build_model(Net))  # Net(**[configs.<config>.model])
    wl.start()
    for window in wl.windows(batches):
        for x, y in window:
            with wl.autocast():
                loss = ...
            wl.step(loss, optimizer)
        if wl.converge:
            wl.log_eval(wl.top1(model, val_loader))  # or wl.evaluate(model, loader, score)

Several ranks run under `python -m paddle.distributed.launch` (the workload.toml's launcher),
which names them PADDLE_TRAINER_ID of PADDLE_TRAINERS_NUM and picks gloo on CPUs, NCCL on GPUs.
Precision: paddle.amp.auto_cast works on GPUs (and XPUs, custom devices) only; on a CPU it
silently stays fp32, so amp and bf16 are refused there rather than timed as what they are not.
"""

import os
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import paddle
import paddle.distributed as dist
from paddle import nn
from paddle.io import DataLoader, Dataset, DistributedBatchSampler, Subset

from . import core
from .env import ContractError

__all__ = ["SeededBatchSampler", "Workload"]


class Workload(core.BaseWorkload):
    """One run of a PaddlePaddle workload: what the agent asked for, where it runs, and what
    it logs. The verbs are those of the PyTorch Workload (workload.py)."""

    RANK_VARIABLES = ("PADDLE_TRAINER_ID", "PADDLE_TRAINERS_NUM")  # paddle.distributed.launch's
    LOCAL_SIZE_VARIABLE = "PADDLE_LOCAL_SIZE"

    def _setup(self) -> None:
        if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
            # The launcher gives each rank its GPU in FLAGS_selected_gpus (device_id reads it).
            self.device = paddle.set_device(f"gpu:{dist.ParallelEnv().device_id}")
        else:
            self.device = paddle.set_device("cpu")
            _mkl_on_amd()
        precision = self.env.precision
        if precision != "fp32" and self.device_type == "cpu":
            raise ContractError(
                f"DS_PRECISION={precision!r}: paddle.amp.auto_cast has no effect on a CPU "
                f"(paddle {paddle.__version__} casts on GPU, XPU and custom devices only)"
            )
        if self.world_size > 1:
            if os.environ.get("PADDLE_NNODES", "1") == "1":
                # One node: the ranks meet on loopback (the launcher's endpoints are 127.0.0.1);
                # gloo would look up the host's name, which a container with no network lacks.
                os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
            dist.init_parallel_env()  # gloo on CPUs, NCCL on GPUs: the launcher's choice
        paddle.seed(self.env.seed)
        self.scaler = paddle.amp.GradScaler(enable=precision == "amp")

    @property
    def device_type(self) -> str:
        return "gpu" if self.device.is_gpu_place() else "cpu"

    def framework(self) -> str:
        return f"paddlepaddle {paddle.__version__}"

    def _sync(self) -> None:
        if self.device_type == "gpu":
            paddle.device.synchronize()

    def _teardown(self) -> None:
        if self.world_size > 1:
            dist.destroy_process_group()

    def no_grad(self) -> AbstractContextManager:
        return paddle.no_grad()

    def wrap(self, model: nn.Layer) -> nn.Layer:
        """The model in paddle.DataParallel when the run spans processes (its parameters are
        on the run's device already: paddle places them where set_device says)."""
        return paddle.DataParallel(model) if self.world_size > 1 else model

    def loader(
        self, dataset: Dataset, train: bool, batch_size: int | None = None, **kwargs: Any
    ) -> DataLoader:
        """This rank's share of dataset in batches of batch_size (default: the run's).

        train: shuffled by the seed, reshuffled every epoch, short tails dropped so that
        every step is a full global batch. Otherwise every sample once over all ranks, in
        order. dataset: anything with len and indexing (numpy arrays, the library's data).
        """
        batch_size = batch_size or self.batch_size
        if train:
            sampler = SeededBatchSampler(
                dataset, batch_size, self.env.seed, self.world_size, self.rank, drop_last=True
            )
            return DataLoader(dataset, batch_sampler=sampler, **kwargs)
        shard = Subset(dataset, list(range(self.rank, len(dataset), self.world_size)))
        return DataLoader(shard, batch_size=batch_size, shuffle=False, **kwargs)

    def log_generated_data(self, name: str, *arrays: Any) -> None:
        """Log the identity of data made by the run itself: name and sha256 of its arrays
        (paddle tensors or numpy arrays; the digest the PyTorch twin logs for the same data)."""
        self.log_generated_arrays(
            name, *(a.numpy() if isinstance(a, paddle.Tensor) else np.asarray(a) for a in arrays)
        )

    def autocast(self) -> AbstractContextManager:
        """The forward pass's precision: fp32, fp16 (amp) or bf16 autocast (GPU only)."""
        dtype = {"amp": "float16", "bf16": "bfloat16"}.get(self.env.precision)
        return nullcontext() if dtype is None else paddle.amp.auto_cast(dtype=dtype)

    def step(
        self, loss: paddle.Tensor, optimizer: paddle.optimizer.Optimizer, clip: float | None = None
    ) -> None:
        """Backward pass and optimizer step, with loss scaling under amp; clip: the largest
        gradient norm (over all of the optimizer's parameters), measured unscaled."""
        self.scaler.scale(loss).backward()
        if clip is not None:
            self.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(optimizer._parameter_list, clip)
        self.scaler.step(optimizer)
        self.scaler.update()
        optimizer.clear_grad()

    def sum_over_ranks(self, *values: float) -> list[float]:
        """Each value summed over all ranks (e.g. correct answers and samples at evaluation)."""
        t = paddle.to_tensor(values, dtype="float64")
        if self.world_size > 1:
            dist.all_reduce(t)
        return t.tolist()

    def top1(self, net: nn.Layer, loader: Iterable) -> float:
        """Top-1 accuracy over the (inputs, labels) batches of loader, every rank's share:
        the highest logit's class is the label (ties: the first maximum wins)."""

        def correct(batch: tuple[paddle.Tensor, paddle.Tensor]) -> tuple[int, int]:
            x, y = batch
            return int((net(x).argmax(1) == y).sum()), len(y)

        return self.evaluate(net, loader, correct)


def _mkl_on_amd() -> None:
    """Let paddle's MKL use its AVX2 kernels on an AMD CPU, as it does on an Intel one.

    The MKL that paddle's CPU wheel bundles (mklml) picks its kernels by CPU vendor and gives
    AMD CPUs a generic path, 2.5x slower at fp32 matmul; MKL_DEBUG_CPU_TYPE=5 selects the AVX2
    path. MKL reads it at its first call, so setting it before any compute is in time. A value
    set outside (by whoever runs the workload) is kept; other vendors are left alone.
    """
    try:
        with open("/proc/cpuinfo") as f:
            amd = any(line.startswith("vendor_id") and "AuthenticAMD" in line for line in f)
    except OSError:
        return
    if amd:
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")


class SeededBatchSampler(DistributedBatchSampler):
    """paddle's DistributedBatchSampler, shuffled by the run's seed and the epoch.

    paddle's own shuffles by the epoch number alone (the same order for every seed);
    torch's DistributedSampler mixes in its seed, and so does this."""

    def __init__(
        self, dataset: Dataset, batch_size: int, seed: int, ranks: int, rank: int, **kwargs: Any
    ) -> None:
        super().__init__(dataset, batch_size, ranks, rank, shuffle=True, **kwargs)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        state = np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0]
        super().set_epoch(int(state))  # the RandomState seed of this epoch's shuffle
