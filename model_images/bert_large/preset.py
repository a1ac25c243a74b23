"""This workload's own workload.toml keys (docs/workload-contract.md): the agent and the library
both read the file through this class, so it imports nothing but deepspark_core."""

from deepspark_core import workload_spec as ws


class InitCheckpoint(ws.Section):
    """The weights converge runs start from instead of random ones (MLPerf's phase-1)."""

    file: str  # a state dict under DS_DATA_DIR (convert_checkpoint.py writes it)
    name: str  # what the row calls it: "from <name> checkpoint sha256:..."


class Preset(ws.Preset):
    seq_len: int  # tokens a sequence
    predictions: int  # masked-token slots a sequence
    train_size: int | None = None  # the generated grammar's sentence pairs
    eval_size: int | None = None
    init_checkpoint: InitCheckpoint | None = None  # None: converge runs train from scratch
    optim: ws.Optim
