"""This workload's own workload.toml keys (docs/workload-contract.md): the agent and the library
both read the file through this class, so it imports nothing but deepspark_core."""

from typing import Literal

from deepspark_core import workload_spec as ws


class Loss(ws.Section):
    """The loss's gains: metrics.YoloLoss's arguments."""

    box: float
    obj: float
    cls: float
    anchor_t: float  # largest ratio of a target's sides to an anchor's


class Optim(ws.Optim):
    optimizer: Literal["SGD", "AdamW"]
    nominal_batch: int  # the batch weight_decay is given for
    final_lr_fraction: float
    ema_decay: float
    ema_tau: int  # steps


class Preset(ws.Preset):
    image_size: int
    train_images: int | None = None  # the generated scenes'
    val_images: int | None = None
    loss: Loss
    optim: Optim
