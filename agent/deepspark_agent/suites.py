"""Suite definitions: `suites/<name>.toml`, a list of workload runs."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from deepspark_agent.contract import Mode, Precision
from deepspark_agent.files import read_toml

SUITES_ENV = "DEEPSPARK_SUITES"
_SOURCE_TREE = Path(__file__).resolve().parents[2] / "suites"


class SuiteError(ValueError):
    """A suite that is missing or invalid."""


class SuiteEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    config: str = "mini"
    mode: Mode = "converge"
    runs: int = Field(default=1, gt=0)
    nproc: int = Field(default=1, gt=0)
    precision: Precision = "fp32"
    batch_size: int | None = Field(default=None, gt=0)
    data_dir: Path | None = None  # relative to the suite file


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    workloads: list[SuiteEntry] = Field(min_length=1)


def suite_path(name_or_path: str) -> Path:
    """A suite's file: by name from the suites directory, or a path to a TOML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = Path(os.environ.get(SUITES_ENV) or _SOURCE_TREE) / f"{name_or_path}.toml"
    if not path.is_file():
        raise SuiteError(f"suite {name_or_path!r}: {path} not found")
    return path


def load_suite(name_or_path: str) -> Suite:
    path = suite_path(name_or_path)
    suite = read_toml(path, Suite, SuiteError)
    for entry in suite.workloads:
        if entry.data_dir is not None:
            entry.data_dir = path.parent / entry.data_dir  # an absolute data_dir stays as is
    return suite
