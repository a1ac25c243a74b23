"""This workload's own workload.toml keys (docs/workload-contract.md): the agent and the library
both read the file through this class, so it imports nothing but deepspark_core."""

from deepspark_core import workload_spec as ws


class Optim(ws.Optim):
    decay_start: float  # the fraction of all steps where the polynomial decay starts


class Preset(ws.Preset):
    train_samples: int | None = None  # the synthetic click log's
    val_samples: int | None = None
    optim: Optim
