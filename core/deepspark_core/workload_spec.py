"""workload.toml's schema: the one typed reading of the file, for the agent and the library.

Every table forbids keys it does not declare, so a typo is an error naming the file, the preset
and the key. The core declares what every workload has and the preset keys several workloads
share; a workload declares its own keys in a `Preset` subclass in `preset.py` beside its
workload.toml (and `Section` subclasses for its own tables), which `read_spec` loads on both
sides. That module must import nothing but the standard library, pydantic and this module:
the agent imports it to list the catalog. A preset's `[model]` table stays a dict of the
model constructor's keyword arguments: the library checks them against the constructor's
signature (deepspark_workload's `build_model`).

Imports only pydantic and the standard library: workload images carry this package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import sys
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from deepspark_core.contract import Mode
from deepspark_core.errors import DeepSparkError
from deepspark_core.files import read_toml

SPEC_FILE = "workload.toml"
PRESET_FILE = "preset.py"  # a workload's own Preset subclass, beside its workload.toml


class WorkloadError(DeepSparkError):
    """A workload that is missing or whose workload.toml is invalid."""


class Section(BaseModel):
    """A table of workload.toml: a key it does not declare is an error."""

    model_config = ConfigDict(extra="forbid")


class Quality(Section):
    metric: str
    direction: Literal["higher", "lower"]


class Optim(Section):
    """`[configs.<name>.optim]`: the keys several workloads share. A workload with keys of its
    own subclasses it and declares the subclass as its Preset's `optim`."""

    lr: float = Field(gt=0)  # the peak learning rate, at a global batch of lr_batch
    lr_batch: int | None = Field(default=None, gt=0)  # None: lr is not scaled with the batch
    warmup: float = Field(default=0.0, ge=0, le=1)  # a fraction of all steps
    weight_decay: float = Field(default=0.0, ge=0)
    momentum: float = Field(default=0.0, ge=0, lt=1)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    clip: float | None = Field(default=None, gt=0)  # the largest gradient norm; None: no clip

    def scaled_lr(self, global_batch: int, rule: Literal["linear", "sqrt"] = "linear") -> float:
        """lr at global_batch: scaled linearly (Goyal et al. 2017) or with the square root of
        global_batch / lr_batch; lr itself without an lr_batch."""
        if self.lr_batch is None:
            return self.lr
        if rule == "sqrt":
            return self.lr * math.sqrt(global_batch / self.lr_batch)
        return self.lr * global_batch / self.lr_batch


class Memory(Section):
    """`[configs.<name>.memory]`: the device memory one rank needs, fixed plus per sample.

    fixed_gb holds the weights, their gradients, the optimizer's state and the framework's
    workspace; per_sample_gb the activations kept for the backward pass, per sample of the
    per-device batch. fp32 figures: under amp and bf16 they are upper bounds."""

    fixed_gb: float = Field(ge=0)
    per_sample_gb: float = Field(ge=0)
    source: str  # "computed: ..." or "measured on <device>"

    def need_gb(self, batch_size: int) -> float:
        return self.fixed_gb + self.per_sample_gb * batch_size


class ReferenceConvergence(Section):
    """`[configs.<name>.reference_convergence]`: how many epochs the preset took to reach its
    target in a reference sweep (MLPerf's reference convergence points, adapted): per seed, the
    first epoch whose evaluation reached it. A converge run far slower is flagged in its row."""

    epochs: list[int] = Field(min_length=1)
    # The global batch it was measured at: a run at another one (more ranks, --batch-size)
    # trains another schedule, and is not compared
    global_batch: int = Field(gt=0)
    measured: str  # how and when: "deepspark-agent run ..., seeds 0-9, <date>, <host>"


class Preset(Section):
    """One `[configs.<name>]` table: the keys the agent reads and those many workloads share."""

    description: str = ""
    target: float  # the quality metric's value that counts as converged
    # Where the target comes from (an MLPerf rule, a paper's table, a reference run), or, with
    # target_validated = false, why it is not yet checked: required on real data.
    target_source: str | None = None
    target_validated: bool = True
    variant: str = ""  # the shortcuts against the reference model, short: the row names them
    batch_size: int = Field(gt=0)  # per device
    max_seconds: float = Field(gt=0)  # a run's hard time limit
    epochs: int | None = Field(default=None, gt=0)  # converge mode's budget: one window each
    steps_per_window: int | None = Field(default=None, gt=0)  # speed mode's window
    data: str | None = None  # which data: a generated set's name or a dataset's
    image_size: int | tuple[int, int] | None = None  # a side, or height and width
    model: dict[str, Any] = Field(default_factory=dict)  # the model constructor's arguments
    optim: Optim | None = None
    # converge mode trains on the workload's real dataset (DS_DATA_DIR with SHA256SUMS), speed
    # mode on synthetic batches of its shapes; False: the preset generates its data
    real_data: bool = False
    memory: Memory | None = None  # what a rank needs; None: small enough for any host
    reference_convergence: ReferenceConvergence | None = None

    @model_validator(mode="after")
    def _target_has_a_source(self) -> Preset:
        # A target on real data is a claim about the model's task: its source must be named.
        if self.real_data and not self.target_source:
            raise ValueError(
                "a target on real data needs target_source (where it comes from, or with "
                "target_validated = false why it is not yet checked)"
            )
        if not self.target_validated and not self.target_source:
            raise ValueError("target_validated = false needs target_source to say why")
        return self

    @model_validator(mode="after")
    def _reference_within_budget(self) -> Preset:
        reference = self.reference_convergence
        if reference and not all(0 < e <= (self.epochs or 0) for e in reference.epochs):
            raise ValueError(f"reference_convergence.epochs must lie in 1..epochs ({self.epochs})")
        return self


class Dataset(Section):
    """`[dataset]`: the real dataset the full config trains on, for `deepspark-agent data`.

    `official` is the layout its publisher distributes (what `data prepare --from` reads);
    the workload's `prepare.py` turns it into the layout the full config reads. A model whose
    paper corpus is not public names a public stand-in and says so in `stand_in`."""

    name: str  # "ImageNet-1k (ILSVRC2012)"
    url: str  # where to get it
    licence: str  # its terms, in a few words ("research, non-commercial; registration")
    size: str  # as downloaded, e.g. "147 GB"
    official: str  # the layout `prepare --from` reads
    stand_in: str | None = None  # why this is not the paper's corpus, when it is not


P = TypeVar("P", bound=Preset)


class WorkloadSpec(Section, Generic[P]):
    """A whole workload.toml, its presets of the workload's own Preset class."""

    name: str
    version: str = "0.1.0"  # the image tag: deepspark/<name>:<version>
    task: str
    framework: str = "pytorch"
    # The DeepSpark model it implements: several workloads (one per framework) may share one.
    model: str = ""
    entrypoint: list[str] = Field(min_length=1)
    # Several ranks: python's arguments in front of the entrypoint's, `{nproc}` and `{out_dir}`
    # filled in (["-m", "paddle.distributed.launch", ...]); None: torchrun's.
    launcher: list[str] | None = None
    quality: Quality
    dataset: Dataset | None = None  # None: no real dataset (the presets generate their data)
    # The contract's modes it runs: version 1's two, plus "infer" (version 1.1) where it has it.
    modes: list[Mode] = Field(default=["speed", "converge"], min_length=1)
    configs: dict[str, P]

    @model_validator(mode="before")
    @classmethod
    def _presets_from_their_base(cls, data: Any) -> Any:
        """A preset with `base = "<preset>"` is that preset with its own keys on top (a table
        it gives replaces the base's whole), so a variant of a preset is not a copy of it. The
        base's reference convergence is not inherited: it was measured on the base alone."""
        configs = data.get("configs") if isinstance(data, dict) else None
        if not isinstance(configs, dict):
            return data
        merged = {}
        for name, table in configs.items():
            base = table.get("base") if isinstance(table, dict) else None
            if base is None:
                merged[name] = table
            elif not isinstance(configs.get(base), dict) or "base" in configs[base]:
                raise ValueError(f"configs.{name}.base: {base!r} is not a preset without a base")
            else:
                inherited = {k: v for k, v in configs[base].items() if k != "reference_convergence"}
                merged[name] = {**inherited, **{k: v for k, v in table.items() if k != "base"}}
        return {**data, "configs": merged}

    def check_mode(self, mode: str) -> None:
        """A one-line refusal of a mode the workload does not run, before anything starts."""
        if mode not in self.modes:
            raise WorkloadError(
                f"{self.name} does not support {mode} mode "
                f"(its workload.toml's modes: {', '.join(self.modes)})"
            )

    @model_validator(mode="after")
    def _model_defaults_to_name(self) -> WorkloadSpec[P]:
        self.model = self.model or self.name
        return self


S = TypeVar("S", bound=WorkloadSpec)
_preset_classes: dict[Path, type[Preset]] = {}  # per preset.py: each is run once


def preset_class(folder: Path) -> type[Preset]:
    """The workload's Preset: `Preset` in folder/preset.py when there is one, else the core's."""
    file = folder / PRESET_FILE
    if not file.is_file():
        return Preset
    key = file.resolve()
    if key not in _preset_classes:
        # A name of its own per file: every workload's module is called preset.py.
        name = "_deepspark_preset_" + hashlib.sha256(str(key).encode()).hexdigest()[:16]
        module_spec = importlib.util.spec_from_file_location(name, file)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # pydantic resolves the module's annotations through it
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:  # the workload's code: any error is the file's
            sys.modules.pop(name, None)
            raise WorkloadError(f"{file}: {type(exc).__name__}: {exc}") from None
        cls = getattr(module, "Preset", None)
        if not (isinstance(cls, type) and issubclass(cls, Preset)):
            raise WorkloadError(f"{file}: no Preset class (a deepspark_core Preset subclass)")
        _preset_classes[key] = cls
    return _preset_classes[key]


def read_spec(
    folder: Path, model: type[S] = WorkloadSpec, extra: dict[str, Any] | None = None
) -> S:
    """folder's workload.toml (plus extra fields) as model, its presets of the workload's own
    Preset class; any problem is a one-line WorkloadError naming the file and the key."""
    return read_toml(folder / SPEC_FILE, model[preset_class(folder)], WorkloadError, extra)
