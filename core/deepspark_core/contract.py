"""The agent's side of the workload contract (docs/workload-contract.md): what a run is given.

Version 1.1 adds `infer` mode (DS_SCENARIO, DS_ENGINE, DS_CHECKPOINT); a run in the modes of
version 1 is still announced as version 1, so workloads written for it keep working."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CONTRACT_VERSION, INFER_CONTRACT_VERSION = "1", "1.1"
Mode = Literal["speed", "converge", "infer"]
MODES: tuple[Mode, ...] = ("speed", "converge", "infer")
# offline: the most samples a second at the batch size; latency: single-stream, one query of
# one sample after another
Scenario = Literal["offline", "latency"]
# eager: the framework's own execution; compile: torch.compile (ONNX Runtime is not offered:
# docs/workload-contract.md says why)
Engine = Literal["eager", "compile"]
CHECKPOINT_FILE = "checkpoint.pt"  # a converge run's final weights, in its DS_OUT_DIR
# Version 1.1's events: a converge run's `checkpoint` (its file's sha256), an infer run's
# `weights` (`checkpoint` and its sha256, or `random`) and its per-window `infer_latency`.
CHECKPOINT_EVENT, WEIGHTS_EVENT, LATENCY_EVENT = "checkpoint", "weights", "infer_latency"
RANDOM_WEIGHTS = "random"
LATENCIES_PER_EVENT = 1000  # an infer_latency line's most latencies: a window logs several
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
    scenario: Scenario = "offline"  # infer mode's
    engine: Engine = "eager"  # infer mode's

    def env(
        self, out_dir: Path, data_dir: Path | None = None, checkpoint: Path | None = None
    ) -> dict[str, str]:
        """The DS_* variables a workload reads; out_dir, data_dir and checkpoint (the weights
        an infer run loads) are absolute paths as the workload sees them (it starts in its
        own folder, not the agent's)."""
        infer = {
            "DS_SCENARIO": self.scenario,
            "DS_ENGINE": self.engine,
            "DS_CHECKPOINT": str(checkpoint or ""),
        }
        return {
            "DS_CONTRACT_VERSION": INFER_CONTRACT_VERSION
            if self.mode == "infer"
            else CONTRACT_VERSION,
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
            **(infer if self.mode == "infer" else {}),
        }
