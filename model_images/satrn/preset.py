"""This workload's own workload.toml keys (docs/workload-contract.md): the agent and the library
both read the file through this class, so it imports nothing but deepspark_core."""

from deepspark_core import workload_spec as ws


class Optim(ws.Optim):
    decay_epochs: list[int]  # lr x gamma after these epochs
    gamma: float


class Preset(ws.Preset):
    image_size: tuple[int, int]  # height, width
    charset: str
    train_samples: int | None = None  # the rendered strings'
    val_samples: int | None = None
    optim: Optim
