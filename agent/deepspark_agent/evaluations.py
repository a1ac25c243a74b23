"""An evaluation: a suite's models, one run set each, in one directory that can be resumed.

    runs/smoke-20261128-160000/
        evaluation.json          the suite as evaluated, the node's devices; written first
        01-resnet50-mini/        a run set (plan.json, speed-1x/, converge-1/, ...)
        summary.json             written last: the evaluation is complete

A run set is its own journal (each run's run.json is written atomically when it ends), so
`up --resume` takes the newest evaluation of the suite without a summary and goes on from
the first run not recorded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from deepspark_agent.suites import Suite, SuiteError
from deepspark_core.files import read_json, stamped_path, write_json
from deepspark_core.results import PLAN_FILE

EVALUATION_FILE, SUMMARY_FILE = "evaluation.json", "summary.json"


class Evaluation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    suite: Suite
    started_at: str
    node_devices: int  # what the suite's "all" devices means on this node
    nnodes: int = 1


class ModelOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    run_set: str  # relative to the evaluation directory
    succeeded: bool  # at least one run succeeded
    complete: bool = True  # every planned run ran to its end (none cut by the budget)


def start(
    out: Path, suite: Suite, node_devices: int, nnodes: int = 1, path: Path | None = None
) -> tuple[Path, Evaluation]:
    """A new evaluation under out, or in `path` (a Slurm job's, made before it ran)."""
    evaluation = Evaluation(
        suite=suite,
        started_at=_now(),
        node_devices=node_devices,
        nnodes=nnodes,
    )
    given = path is not None
    path = path or stamped_path(out, suite.name)
    path.mkdir(parents=True, exist_ok=given)
    write_json(path / EVALUATION_FILE, evaluation)
    return path, evaluation


def resume(out: Path, suite_name: str) -> tuple[Path, Evaluation]:
    """The newest unfinished evaluation of suite_name under out."""
    unfinished = [
        d
        for d in out.glob(f"{suite_name}-*")
        if (d / EVALUATION_FILE).is_file() and not (d / SUMMARY_FILE).exists()
    ]
    if not unfinished:
        raise SuiteError(f"--resume: no unfinished evaluation of suite {suite_name!r} in {out}")
    path = max(unfinished, key=lambda d: d.stat().st_mtime)
    return path, load(path)


def load(path: Path) -> Evaluation:
    return read_json(path / EVALUATION_FILE, Evaluation, SuiteError)


def run_set_path(path: Path, index: int, workload: str, config: str) -> Path:
    return path / f"{index + 1:02d}-{workload}-{config}"


def run_sets(path: Path) -> list[Path]:
    """The evaluation's run sets that hold a plan, in suite order."""
    sets = sorted(d for d in path.glob("[0-9][0-9]-*") if (d / PLAN_FILE).is_file())
    if not sets:
        raise SuiteError(f"{path}: an evaluation with no run set yet")
    return sets


class Summary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    finished_at: str
    models: list[ModelOutcome]


def finish(path: Path, outcomes: list[ModelOutcome]) -> None:
    write_json(path / SUMMARY_FILE, Summary(finished_at=_now(), models=outcomes))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
