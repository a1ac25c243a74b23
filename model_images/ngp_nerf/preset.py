"""This workload's own workload.toml keys (docs/workload-contract.md): the agent and the library
both read the file through this class, so it imports nothing but deepspark_core."""

from deepspark_core import workload_spec as ws


class Optim(ws.Optim):
    decay_at: list[float]  # fractions of all steps where lr ...
    decay: float  # ... is multiplied by this


class Preset(ws.Preset):
    train_views: int | None = None  # the generated spheres' views
    test_views: int | None = None
    eval_chunk: int  # rays rendered at once
    optim: Optim
