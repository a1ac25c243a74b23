"""The agent's side of the workload contract (docs/workload-contract.md): what a run is given."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CONTRACT_VERSION = 1
Mode = Literal["speed", "converge"]
Precision = Literal["fp32", "amp", "bf16"]
# The `dataset` event's value for data a run makes itself (generated sets, speed mode's random
# batches): its metadata names the `generator` and, where the data is fixed, its `sha256`.
SYNTHETIC_DATA = "synthetic"


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one run of one workload."""

    model: str
    config: str
    mode: Mode
    seed: int
    batch_size: int | None = None  # None: the preset's own
    precision: Precision = "fp32"
    nproc: int = 1
    warmup_windows: int = 1
    windows: int = 5
    max_seconds: float = 600.0
    data_verified: str | None = None  # the data's manifest digest, once the agent verified it

    def env(self, out_dir: Path, data_dir: Path | None = None) -> dict[str, str]:
        """The DS_* variables a workload reads; out_dir and data_dir are absolute paths as
        the workload sees them (it starts in its own folder, not the agent's)."""
        return {
            "DS_CONTRACT_VERSION": str(CONTRACT_VERSION),
            "DS_MODEL": self.model,
            "DS_CONFIG": self.config,
            "DS_MODE": self.mode,
            "DS_SEED": str(self.seed),
            "DS_BATCH_SIZE": "" if self.batch_size is None else str(self.batch_size),
            "DS_PRECISION": self.precision,
            "DS_WARMUP_WINDOWS": str(self.warmup_windows),
            "DS_WINDOWS": str(self.windows),
            "DS_DATA_DIR": str(data_dir or ""),
            "DS_OUT_DIR": str(out_dir),
            "DS_MAX_SECONDS": str(self.max_seconds),
            "DS_DATA_VERIFIED": self.data_verified or "",
        }
