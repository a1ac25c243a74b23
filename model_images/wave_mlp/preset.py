"""This workload's own workload.toml keys (docs/workload-contract.md): the agent and the library
both read the file through this class, so it imports nothing but deepspark_core."""

from deepspark_core import workload_spec as ws


class Optim(ws.Optim):
    mixup: float  # Beta(alpha, alpha) of Mixup / CutMix; 0: off
    cutmix: float


class Preset(ws.Preset):
    optim: Optim
