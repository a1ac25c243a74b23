"""This workload's own workload.toml keys (docs/workload-contract.md): the agent and the library
both read the file through this class, so it imports nothing but deepspark_core."""

from deepspark_core import workload_spec as ws


class Optim(ws.Optim):
    beta1: float  # AdamW's
    beta2: float


class Preset(ws.Preset):
    seq_len: int
    train_sequences: int | None = None  # the generated language's
    val_sequences: int | None = None
    token_dtype: str | None = None  # the pre-tokenized corpus's numpy dtype
    optim: Optim
