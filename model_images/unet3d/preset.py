"""This workload's own workload.toml keys (docs/workload-contract.md): the agent and the library
both read the file through this class, so it imports nothing but deepspark_core."""

from deepspark_core import workload_spec as ws


class Optim(ws.Optim):
    init_lr: float  # the warmup starts here


class Preset(ws.Preset):
    patch_size: int  # a training patch's side
    train_cases: int | None = None  # the generated phantoms'
    val_cases: int | None = None
    passes_per_window: int | None = None  # KiTS19: passes over the training cases a window
    optim: Optim
