"""The files of a run set, as versioned pydantic schemas.

A run set is one `deepspark-agent run`: a directory with `plan.json` (what was asked),
one subdirectory per run with `run.json` (how the runtime saw it end) beside the workload's
raw artifacts (`mllog.log`, `stdout.log`, `telemetry.jsonl`), and `result.json` (the six
dimensions, always recomputable from the raw artifacts by `assess`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from deepspark_agent.contract import Mode, Precision
from deepspark_agent.devices import SystemDescription
from deepspark_agent.files import M, read_json
from deepspark_agent.metrics import Accuracy, Memory, Power, Speed, Stability

RESULT_SCHEMA = "deepspark.result/v1"
PLAN_FILE, RUN_FILE, RESULT_FILE = "plan.json", "run.json", "result.json"
EVENTS_FILE, STDOUT_FILE, TELEMETRY_FILE = "mllog.log", "stdout.log", "telemetry.jsonl"


class SchemaError(ValueError):
    """A run-set file that is missing or does not match its schema."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QualityTarget(_Strict):
    metric: str
    direction: Literal["higher", "lower"]
    target: float


class RunPlan(_Strict):
    """What the user asked for; written before the first run starts."""

    schema_version: Literal["deepspark.plan/v1"] = "deepspark.plan/v1"
    agent_version: str
    created_at: str
    model: str
    task: str
    config: str
    mode: Mode
    precision: Precision
    batch_size: int  # per device
    nproc: int
    seeds: list[int]
    baseline_seed: int | None  # a 1-rank run for card linearity when nproc > 1
    warmup_windows: int
    windows: int
    tolerance: float
    runtime: str
    quality: QualityTarget
    system: SystemDescription


class ImageRef(_Strict):
    """The container image a run used: what was asked for and exactly what ran."""

    tag: str
    id: str  # sha256 of the image config: identical bytes, wherever the image came from
    repo_digests: list[str] = []  # registry manifest digests, once pushed or pulled


class RunRecord(_Strict):
    """How one run ended, as the runtime saw it."""

    label: str
    seed: int
    nproc: int
    exit_code: int | None
    wall_s: float
    error: str | None = None
    timed_out: bool = False
    mono_offset_ns: int  # monotonic minus wall clock at launch, to place time_ms-only events
    runtime: str = "process"
    image: ImageRef | None = None


class Figures(_Strict):
    """What one run measures; a result's dimensions repeat its representative run's."""

    speed: Speed | None = None
    end_to_end_speed: float | None = None
    power: Power | None = None
    memory: Memory | None = None
    power_scope: str | None = None  # accelerator, container or process-tree
    memory_scope: str | None = None
    telemetry_hz: float | None = None  # achieved sampling rate
    energy_counter_j: float | None = None  # from the hardware's energy counter, where it has one


class RunSummary(Figures):
    """One run, assessed from its raw artifacts."""

    label: str
    seed: int
    nproc: int
    status: Literal["success", "aborted"]
    reason: str | None = None
    framework: str | None = None  # what the workload logged, e.g. "pytorch 2.13.0"
    dataset: str | None = None  # the data it saw: "SHA256SUMS sha256:<manifest digest>"
    image: ImageRef | None = None
    accuracy: float | None = None  # the final quality value
    events: int = 0
    malformed_lines: int = 0
    notes: list[str] = []


class Linearity(_Strict):
    card: float
    devices: int
    speed_1: float


class Dimensions(Figures):
    """Speed, power and memory of the median-speed run; accuracy (median final value of the
    successful runs), linearity and stability of the whole set."""

    accuracy: Accuracy | None = None
    linearity: Linearity | None = None
    stability: Stability | None = None


class Result(_Strict):
    schema_version: Literal["deepspark.result/v1"] = RESULT_SCHEMA
    plan: RunPlan
    runs: list[RunSummary]
    baseline: RunSummary | None = None
    dimensions: Dimensions
    notes: list[str] = []  # why a dimension is missing, one line each


def read_model(path: Path, model: type[M]) -> M:
    return read_json(path, model, SchemaError)
