"""The workload side of the contract for PyTorch: devices, DDP, precision, the optimizer step.

A train.py reads:

with Workload.from_env(__file__) as wl:   # env, workload.toml, seed, devices; init_start
    model = wl.wrap(wl.build_model(Net))  # Net(**[configs.<config>.model])
    wl.start()                            # init_stop ... run_start
    for window in wl.windows(batches):    # block_start/block_stop around each window
        for x, y in window:
            with wl.autocast():
                loss = ...
            wl.step(loss, optimizer)
        if wl.converge:
            wl.log_eval(wl.top1(model, val_loader))  # or wl.evaluate(model, loader, score)
    if wl.converge:
        wl.save_checkpoint(net)               # $DS_OUT_DIR/checkpoint.pt, for infer runs
# run_stop: success, or aborted with the reason if anything raised (SIGTERM included)

Infer mode (contract 1.1, `modes` in workload.toml) is one call instead of the training loop:

    wl.inference(wl.wrap(net), batches, query=lambda m, x: m(x.to(wl.device)),
                 evaluate=lambda m: wl.top1(m, val_loader))

The windows, events, spec and seeding are framework-free (core.py); this adds torch's part.
"""

import os
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from . import core
from .core import ContractError, Terminated, Window, load_spec
from .datasets import tensors_sha256

__all__ = ["Terminated", "Window", "Workload", "gather_over_ranks", "load_spec"]


class Workload(core.BaseWorkload):
    """One run of a PyTorch workload: what the agent asked for, where it runs, and what it logs."""

    def _setup(self) -> None:
        if torch.cuda.is_available():
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if self.world_size > 1:
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        torch.manual_seed(self.env.seed)  # every device's generator too
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.env.precision == "amp")

    @property
    def device_type(self) -> str:
        return self.device.type

    def framework(self) -> str:
        return f"pytorch {torch.__version__}"

    def _teardown(self) -> None:
        if dist.is_initialized():
            dist.barrier()  # no rank tears down gloo while a peer still talks to it
            dist.destroy_process_group()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def wrap(self, model: nn.Module) -> nn.Module:
        """Move model to the run's device; wrap it in DDP when the run spans processes."""
        model = model.to(self.device)
        if self.world_size == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def no_grad(self) -> torch.no_grad:
        return torch.no_grad()

    def _save_weights(self, net: nn.Module, path: Path) -> None:
        torch.save(net.state_dict(), path)

    def _load_weights(self, net: nn.Module, path: Path) -> None:
        try:
            net.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))
        except (RuntimeError, pickle.UnpicklingError) as exc:  # torch's reasons span lines
            why = " ".join(str(exc).split())
            raise ContractError(f"{path}: not this model's state dict ({why[:300]})") from None

    def _engine(self, net: nn.Module) -> nn.Module:
        """eager: net; compile: torch.compile(net), compiled at its first query (the warm-up,
        during init)."""
        return torch.compile(net) if self.env.engine == "compile" else net

    def loader_options(self, most_workers: int = 8) -> dict[str, Any]:
        """The library's options (workers), and pinned memory for a copy to a GPU."""
        return {**super().loader_options(most_workers), "pin_memory": self.device.type == "cuda"}

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

    def log_generated_data(self, name: str, *tensors: torch.Tensor) -> None:
        """Log the identity of data made by the run itself (mini configs): name and sha256."""
        self.log_synthetic(name, tensors_sha256(*tensors))

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

    def top1(
        self, net: nn.Module, loader: Iterable, memory_format: torch.memory_format | None = None
    ) -> float:
        """Top-1 accuracy over the (inputs, labels) batches of loader, every rank's share:
        the highest logit's class is the label (ties: the first maximum wins). memory_format:
        the inputs' on the device (torch.channels_last for a model that is)."""
        layout = {} if memory_format is None else {"memory_format": memory_format}

        def correct(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[int, int]:
            x, y = batch
            x = x.to(self.device, non_blocking=True, **layout)
            y = y.to(self.device, non_blocking=True)
            return int((net(x).argmax(1) == y).sum()), len(y)

        return self.evaluate(net, loader, correct)

    def gather_over_ranks(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's 1-D t (of any length) concatenated in rank order, on every rank: for
        metrics that are no sum over samples (AUC, mAP)."""
        return gather_over_ranks(t)


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
