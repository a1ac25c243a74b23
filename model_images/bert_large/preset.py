"""This workload's own workload.toml keys (docs/workload-contract.md): the agent and the library
both read the file through this class, so it imports nothing but deepspark_core."""

from deepspark_core import workload_spec as ws


class Preset(ws.Preset):
    seq_len: int  # tokens a sequence
    predictions: int  # masked-token slots a sequence
    train_size: int | None = None  # the generated grammar's sentence pairs
    eval_size: int | None = None
    optim: ws.Optim
