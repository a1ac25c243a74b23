"""The workload side of the DeepSpark workload contract (docs/workload-contract.md).

`Env` and `MLLogger` need only the standard library, so a workload in any framework can use
them. The rest is framework-free too (core.py: spec, seeding, windows and events; images.py and
mlm.py: the mini data as numpy arrays) except the frameworks' `Workload`s, imported on first
use: `Workload` (PyTorch, workload.py) and `paddle_workload.Workload` (PaddlePaddle).
"""

import importlib
from typing import Any

from .env import ContractError, Env
from .mllog import MLLogger

__all__ = ["ContractError", "Env", "MLLogger", "Window", "Workload", "vision"]


def __getattr__(name: str) -> Any:
    if name in ("Window", "Workload"):
        from . import workload

        return getattr(workload, name)
    if name == "vision":  # image classification data (torch, Pillow)
        return importlib.import_module(f"{__name__}.vision")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
