"""This workload's own workload.toml keys (docs/workload-contract.md): the agent and the library
both read the file through this class, so it imports nothing but deepspark_core."""

from deepspark_core import workload_spec as ws


class Optim(ws.Optim):
    eps: float  # Adam's
    anneal_at: list[float]  # fractions of all steps where lr ...
    anneal_factor: float  # ... is multiplied by this


class Preset(ws.Preset):
    utterances: int | None = None  # synthetic training utterances ...
    val_utterances: int | None = None  # ... and held-out ones
    text_length: int | None = None  # speed mode's utterances: characters ...
    frames: int | None = None  # ... and mel frames
    optim: Optim
