"""The files of a run set, as versioned pydantic schemas.

A run set is one model's evaluation (`run`, or one model of `up`): a directory with
`plan.json` (the runs planned: speed runs at each scaling point, converge runs for accuracy and
stability), one subdirectory per run with `run.json` (how the runtime saw it end) beside the
workload's raw artifacts (`mllog.log`, `stdout.log`, `telemetry.jsonl`), and `result.json`
(the six dimensions, always recomputable from the raw artifacts by `assess`). A run's
`run.json` is written last and atomically: the run set is its own journal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from deepspark_core.contract import RANDOM_WEIGHTS, Engine, Mode, Precision, Scenario
from deepspark_core.errors import DeepSparkError
from deepspark_core.files import M, read_json
from deepspark_core.metrics import (
    Accuracy,
    Latency,
    Loader,
    Memory,
    Power,
    SourcePower,
    Speed,
    Stability,
)
from deepspark_core.system import SystemDescription

RESULT_SCHEMA = "deepspark.result/v2"
PLAN_FILE, RUN_FILE, RESULT_FILE = "plan.json", "run.json", "result.json"
EVENTS_FILE, STDOUT_FILE, TELEMETRY_FILE = "mllog.log", "stdout.log", "telemetry.jsonl"
# At a run set's top: every power source sampled with nothing running, before its first run
# (the idle floor); telemetry lines like a run's.
IDLE_FILE = "idle.jsonl"
# In a multi-node run's directory, each other node's telemetry, gathered by node 0's agent.
NODE_TELEMETRY = "telemetry-node{rank}.jsonl"


class SchemaError(DeepSparkError):
    """A run-set file that is missing or does not match its schema."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _added(default: Any = None) -> Any:
    """A field added after the schema's version (inference's, a target's source, a
    reproduction, node power and the idle floor): left out of the JSON while it holds its
    default, so that older run sets read, and their signed results recompute, byte for byte as
    before."""
    return Field(default=default, exclude_if=lambda value: value == default)


class QualityTarget(_Strict):
    metric: str
    direction: Literal["higher", "lower"]
    target: float
    source: str | None = _added()  # where the target comes from (workload.toml's target_source)
    validated: bool = _added(True)  # False: not yet checked against a reference (source: why)
    # Epochs to target of the preset's reference sweep, one per seed, at a global batch of
    # reference_batch: a converge run at that batch far slower is flagged (slow_convergence)
    reference_epochs: list[int] | None = _added()
    reference_batch: int | None = _added()


class PlannedRun(_Strict):
    """One run of the plan: its directory's name, mode, seed and scale."""

    # e.g. speed-8x, speed-2n, converge-3: also the run's directory, so a plain name
    label: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,63}$")
    mode: Mode
    seed: int
    nproc: int  # ranks (devices) on each node
    nnodes: int = 1
    scenario: Scenario | None = _added()  # an infer run's
    engine: Engine | None = _added()  # an infer run's
    # The run of this set whose checkpoint an infer run loads (None: random weights)
    checkpoint_from: str | None = _added()


class Implementation(_Strict):
    """Whose code the runs measure, pinned by digest: the project's reference workload (a
    folder of the built-in catalog) or a vendor's (an added folder, or an image of its own)."""

    origin: Literal["reference", "vendor"]
    kind: Literal["folder", "image"]
    source: str  # the workload's folder, or the image as given (--image)
    digest: str  # a folder's sha256 (workloads.folder_digest), or the image's id
    repo_digests: list[str] = []  # an image's registry digests, once pushed or pulled


class Reproduces(_Strict):
    """The published result a run set reproduces (`up --reproduce`): signed with its plan, so a
    collector can trust the link; the statement's digest tells a collector whether the id is
    its own result or another collector's."""

    collector: str  # the collector's URL the result was fetched from
    id: int = Field(ge=1, le=2**63 - 1)
    statement: str = Field(pattern=r"^[0-9a-f]{64}$")  # the published statement's sha256
    skipped: list[str] = []  # the published runs this host could not hold, each with why


class RunPlan(_Strict):
    """What the user asked for; written before the first run starts."""

    schema_version: Literal["deepspark.plan/v2"] = "deepspark.plan/v2"
    agent_version: str
    created_at: str
    model: str  # the workload
    implements: str | None = None  # the DeepSpark model it implements (None: plans before it)
    framework: str | None = None  # as the workload declares it: pytorch, paddlepaddle, ...
    implementation: Implementation | None = None  # None: plans before it
    task: str
    config: str
    variant: str | None = _added()  # the preset's shortcuts against the reference model
    precision: Precision
    batch_size: int  # per device
    nproc: int  # devices per node at the reported scale: the table's "8x"
    nnodes: int = 1  # nodes at the largest scaling point
    runs: list[PlannedRun]
    warmup_windows: int
    windows: int
    tolerance: float
    runtime: str
    quality: QualityTarget
    system: SystemDescription
    reproduces: Reproduces | None = _added()

    @model_validator(mode="after")
    def _distinct_labels(self) -> RunPlan:
        labels = [r.label for r in self.runs]
        if len(set(labels)) != len(labels):
            raise ValueError("run labels must be distinct")
        return self

    @property
    def mode(self) -> str:
        """speed, converge, or speed+converge (a whole evaluation)."""
        return "+".join(sorted({r.mode for r in self.runs}, reverse=True))


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
    timed_out: bool = False  # killed at its time budget (the run's own or the run set's)
    started: bool = True  # False: the run set's budget was spent before this run's turn
    mono_offset_ns: int  # monotonic minus wall clock at launch, to place time_ms-only events
    runtime: str = "process"
    image: ImageRef | None = None
    # A multi-node run: per other node (rank), the ns to add to its telemetry's times to put
    # them on this node's clock (the nodes' monotonic-minus-wall offsets at launch).
    node_clock_ns: dict[int, int] = {}


RunStatus = Literal["success", "aborted", "incomplete"]


class Inference(_Strict):
    """What an infer run measures beside its throughput (`speed`: the same 5-window rule),
    power and memory: latency per query, accuracy against the preset's target, energy per
    inference. A figure that cannot be computed is None, with its reason in `*_na`."""

    batch_size: int  # samples per query: the plan's batch offline, 1 in the latency scenario
    weights: str  # "random", or "checkpoint sha256:..." (what the workload loaded)
    weights_from: str | None = None  # the converge run of this set whose checkpoint it is
    latency: Latency | None = None
    latency_na: str | None = None
    accuracy: Accuracy | None = None
    accuracy_na: str | None = None
    j_per_inference: float | None = None  # sampled power's integral over the windows / samples
    counter_j_per_inference: float | None = None  # the hardware's energy counter, where recorded


class NodeSource(_Strict):
    """A node power source over a run's measured windows: IPMI, Redfish, a RAPL domain (the
    telemetry's device), its achieved rate, and its figures or why they are N/A."""

    source: str
    hz: float | None = None  # its achieved sampling rate over the run
    power: SourcePower | None = None
    na: str | None = None


class IdleFloor(_Strict):
    """Every power source sampled with nothing running before the first run (`idle.jsonl`):
    mean power per accelerator (its most specific scope) and per node source."""

    seconds: float | None = None  # the recording's span; None when nothing answered
    chip_w: tuple[float, ...] | None = None  # per device
    chip_scope: str | None = None
    node_w: dict[str, float] = {}  # per node source
    na: str | None = None  # why neither was measured


class Figures(_Strict):
    """What one run measures; a result's dimensions repeat its representative run's."""

    speed: Speed | None = None
    speed_na: str | None = None  # why speed is N/A, when it is
    end_to_end_speed: float | None = None
    power: Power | None = None
    memory: Memory | None = None
    power_scope: str | None = None  # accelerator, container or process-tree
    memory_scope: str | None = None
    telemetry_hz: float | None = None  # achieved sampling rate
    energy_counter_j: float | None = None  # from the hardware's energy counter, where it has one
    # Each node power source's figures; None: the run recorded none (its row says so)
    node_power: list[NodeSource] | None = _added()

    @property
    def counter_j_per_sample(self) -> float | None:
        """The chip's energy counter over the windows per sample (the power integral's is
        `power.j_per_sample`; their ratio gives the samples the windows held)."""
        power, counter = self.power, self.energy_counter_j
        if power is None or counter is None or not power.j_per_sample or not power.energy_j:
            return None
        return counter * power.j_per_sample / power.energy_j


class NodeFigures(_Strict):
    """One node's share of a multi-node run: its own devices' power and memory."""

    node: int
    power: Power | None = None
    memory: Memory | None = None
    scope: str | None = None


class RunSummary(Figures):
    """One run, assessed from its raw artifacts; a multi-node run's power and memory cover
    every node's devices (power summed, memory per device), `nodes` each node's own."""

    label: str
    mode: Mode
    seed: int
    nproc: int
    nnodes: int = 1
    scenario: Scenario | None = _added()  # as planned (PlannedRun)
    engine: Engine | None = _added()
    checkpoint_from: str | None = _added()
    # aborted: failed on its own (exit code, run_stop aborted, a non-finite accuracy);
    # incomplete: the agent cut it (killed at its time budget, or never started)
    status: RunStatus
    reason: str | None = None
    framework: str | None = None  # what the workload logged, e.g. "pytorch 2.13.0"
    dataset: str | None = None  # the data it saw: "SHA256SUMS sha256:<manifest digest>"
    synthetic_data: bool = False  # the run made its data (generated, or random batches)
    data_loader: str | None = None  # how it read that data, e.g. "pillow x12 workers"
    loader: Loader | None = None  # its wait for data, where its windows logged it (converge)
    image: ImageRef | None = None
    accuracy: float | None = None  # the final quality value
    # The first epoch whose evaluation reached the target, where the plan has a reference
    epochs_to_target: int | None = _added()
    checkpoint: str | None = _added()  # a converge run's final weights: "sha256:..."
    # The weights a training run started from, where it logged them (a `weights` event): e.g.
    # "phase-1 checkpoint sha256:...", or "random"; None: not logged (from scratch)
    start_weights: str | None = _added()
    inference: Inference | None = _added()  # an infer run's own figures
    events: int = 0
    malformed_lines: int = 0
    nodes: list[NodeFigures] = []  # a multi-node run's nodes, node 0 first
    notes: list[str] = []

    @property
    def why(self) -> str:
        """Why the run failed or was cut, else why its speed is N/A; empty when neither."""
        if self.reason:
            return self.reason
        return f"speed: {self.speed_na}" if self.speed_na else ""


class Linearity(_Strict):
    """Scaling efficiency: speed at N devices over N times the speed at one (card), and at M
    nodes over M times one node's (node); 1.0 is perfect."""

    card: float | None = None
    devices: int
    speed_1: float | None = None  # one device's speed
    node: float | None = None
    nodes: int = 1


class Dimensions(Figures):
    """Speed, power and memory of the median-speed run at the reported scale (speed runs, or
    converge runs when the plan has none); accuracy (median final value) and stability of the
    converge runs; linearity across the scaling points."""

    accuracy: Accuracy | None = None
    linearity: Linearity | None = None
    stability: Stability | None = None


class Result(_Strict):
    schema_version: Literal["deepspark.result/v2"] = RESULT_SCHEMA
    plan: RunPlan
    runs: list[RunSummary]  # in plan order; a run not (yet) recorded is missing
    dimensions: Dimensions
    # incomplete: some planned run did not run to its end (the budget cut it, or it is not
    # recorded yet), so stability is not scored and accuracy counts fewer runs than planned
    state: Literal["complete", "incomplete"] = "complete"
    notes: list[str] = []  # why a dimension is missing, one line each
    idle: IdleFloor | None = _added()  # None: the run set has no idle recording

    @property
    def synthetic_data(self) -> bool:
        """Some run trained on data it made itself, not on a dataset."""
        return any(r.synthetic_data for r in self.runs)

    @property
    def unranked(self) -> str | None:
        """Why the result must not be ranked: accuracy on synthetic data says nothing of the
        model's quality on its task. None: rankable."""
        scored = [r for r in self.runs if r.mode in ("converge", "infer")]
        if any(r.synthetic_data for r in scored):
            return f"{' and '.join(sorted({r.mode for r in scored}))} runs on synthetic data"
        if any(r.inference and r.inference.weights == RANDOM_WEIGHTS for r in self.runs):
            return "inference on random weights"
        return None

    @property
    def infer_runs(self) -> list[RunSummary]:
        """The infer runs, one per scenario and engine: each its own row."""
        return [r for r in self.runs if r.mode == "infer"]


def read_model(path: Path, model: type[M]) -> M:
    return read_json(path, model, SchemaError)
