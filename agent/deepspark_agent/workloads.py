"""The workload catalog: each `model_images/<name>/workload.toml` describes one workload."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from deepspark_agent.files import read_toml

# A source checkout keeps the workloads beside the agent; an install elsewhere points at them.
WORKLOADS_ENV = "DEEPSPARK_WORKLOADS"
IMAGE_NAMESPACE = "deepspark"
_SOURCE_TREE = Path(__file__).resolve().parents[2] / "model_images"


class WorkloadError(ValueError):
    """A workload that is missing or whose workload.toml is invalid."""


class Quality(BaseModel):
    model_config = ConfigDict(extra="ignore")

    metric: str
    direction: Literal["higher", "lower"]


class Preset(BaseModel):
    """One `[configs.<name>]` table; the workload reads its own extra keys (model size...)."""

    model_config = ConfigDict(extra="ignore")

    target: float
    batch_size: int = Field(gt=0)
    max_seconds: float = Field(gt=0)
    epochs: int | None = Field(default=None, gt=0)  # converge mode's budget, for progress bars
    description: str = ""


class Workload(BaseModel):
    model_config = ConfigDict(extra="ignore")

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
    configs: dict[str, Preset]
    path: Path = Path()

    @model_validator(mode="after")
    def _model_defaults_to_name(self) -> Workload:
        self.model = self.model or self.name
        return self

    @property
    def image(self) -> str:
        return f"{IMAGE_NAMESPACE}/{self.name}:{self.version}"

    def preset(self, config: str) -> Preset:
        try:
            return self.configs[config]
        except KeyError:
            known = ", ".join(sorted(self.configs))
            raise WorkloadError(f"{self.name} has no config {config!r} (known: {known})") from None


def workloads_dir() -> Path:
    return Path(os.environ.get(WORKLOADS_ENV) or _SOURCE_TREE)


def load_workload(path: Path) -> Workload:
    """Read one workload folder's workload.toml."""
    return read_toml(path / "workload.toml", Workload, WorkloadError, {"path": path})


def list_workloads(root: Path | None = None) -> list[Workload]:
    root = root or workloads_dir()
    if not root.is_dir():
        raise WorkloadError(f"workloads directory {root} not found (set {WORKLOADS_ENV})")
    return [load_workload(p.parent) for p in sorted(root.glob("*/workload.toml"))]


def find_implementation(model: str, framework: str | None, root: Path | None = None) -> Workload:
    """The workload that implements model in framework; without a framework, the workload
    named model."""
    if framework is None:
        return find_workload(model, root)
    implementations: dict[str, Workload] = {}  # the first in name order, per framework
    for w in list_workloads(root):
        if w.model == model:
            implementations.setdefault(w.framework, w)
    if framework not in implementations:
        raise WorkloadError(
            f"no {framework} workload implements {model!r} "
            f"(it has: {', '.join(implementations) or 'no workload at all'})"
        )
    return implementations[framework]


def find_workload(name: str, root: Path | None = None) -> Workload:
    root = root or workloads_dir()
    path = root / name
    if not (path / "workload.toml").is_file():
        known = ", ".join(w.name for w in list_workloads(root)) or "none"
        raise WorkloadError(f"unknown workload {name!r} (known: {known})")
    return load_workload(path)
