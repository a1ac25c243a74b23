"""Suite definitions: `suites/<name>.toml`, the models of an evaluation and how to run each.

Per model: the preset, precision and batch size; the speed runs' measured windows at each
scaling point (device counts on one node; "all" is every device the node has); the converge
runs that give accuracy and stability; and a time budget for all of the model's runs. An
inference entry names its scenarios (and engines): its converge runs train the weights its
infer runs load (planning.suite_runs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deepspark_agent.workloads import Workload, find_implementation
from deepspark_core.contract import Engine, Precision, Scenario
from deepspark_core.errors import DeepSparkError
from deepspark_core.files import read_toml

SUITES_ENV = "DEEPSPARK_SUITES"
_SOURCE_TREE = Path(__file__).resolve().parents[2] / "suites"


class SuiteError(DeepSparkError):
    """A suite that is missing or invalid."""


class SuiteEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str  # a DeepSpark model (resnet50) or a workload's name
    framework: str | None = None  # the model's implementation in this framework (suite default)
    config: str = "mini"
    precision: Precision = "fp32"
    batch_size: int | None = Field(default=None, gt=0)  # per device; None: the preset's
    devices: list[int | Literal["all"]] = Field(default=["all"], min_length=1)
    windows: int = Field(default=5, gt=2)  # measured speed windows (3 at least: trimmed mean)
    warmup_windows: int = Field(default=1, ge=0)
    stability_runs: int = Field(default=5, ge=0)  # converge runs at the node's scale
    tolerance: float = Field(default=0.01, ge=0)  # stability band, +/-
    budget_s: float | None = Field(default=None, gt=0)  # all of this model's runs
    data_dir: Path | None = None  # relative to the suite file
    # An inference entry: an infer run per scenario and engine (and no training speed runs)
    scenarios: list[Scenario] = []
    engines: list[Engine] = Field(default=["eager"], min_length=1)
    # weights for the infer runs where no converge run writes them (relative to the suite file)
    checkpoint: Path | None = None

    @field_validator("devices")
    @classmethod
    def _positive(cls, points: list[int | str]) -> list[int | str]:
        if any(p != "all" and p < 1 for p in points):
            raise ValueError('device counts must be >= 1 (or "all")')
        return points


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    framework: str | None = None  # each model's framework where its entry names none
    workloads: list[SuiteEntry] = Field(min_length=1)

    def resolve(self, extra: Sequence[Path] = ()) -> list[tuple[SuiteEntry, Workload]]:
        """Each entry with the workload that runs it (from the catalog and the extra workload
        folders); a clear error for a model they lack in the framework asked for."""
        return [
            (e, find_implementation(e.model, e.framework or self.framework, extra))
            for e in self.workloads
        ]


def suite_path(name_or_path: str) -> Path:
    """A suite's file: by name from the suites directory, or a path to a TOML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = Path(os.environ.get(SUITES_ENV) or _SOURCE_TREE) / f"{name_or_path}.toml"
    if not path.is_file():
        raise SuiteError(f"suite {name_or_path!r}: {path} not found")
    return path


def load_suite(name_or_path: str, base: Path | None = None) -> Suite:
    """A suite, its data_dir entries made relative to base (default: the suite's folder)."""
    path = suite_path(name_or_path)
    suite = read_toml(path, Suite, SuiteError)
    for entry in suite.workloads:  # an absolute path stays as is
        if entry.data_dir is not None:
            entry.data_dir = (base or path.parent) / entry.data_dir
        if entry.checkpoint is not None:
            entry.checkpoint = (base or path.parent) / entry.checkpoint
    return suite
