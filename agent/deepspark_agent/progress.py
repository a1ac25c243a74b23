"""The terminal's progress bars: a run set's (`Bars`, the runner's listener), and one long job's
(`job_bars`: a dataset converted, hashed, verified)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from deepspark_core.results import PlannedRun, RunPlan

_COLUMNS = (
    TextColumn("{task.description}"),
    BarColumn(),
    MofNCompleteColumn(),
    TextColumn("{task.fields[unit]}"),
    TextColumn("{task.fields[rate]}"),
    TimeElapsedColumn(),
    TextColumn("ETA"),
    TimeRemainingColumn(),
)


class Bars:
    """A bar of the plan's runs, and one of windows per launched run with its last speed."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress: Progress | None = None
        self._overall = self._current = TaskID(0)

    def plan_started(self, plan: RunPlan) -> None:
        self._progress = Progress(*_COLUMNS, console=self._console, transient=False)
        self._progress.start()
        self._overall = self._progress.add_task(
            f"{plan.model}: runs", total=len(plan.runs), unit="runs", rate=""
        )

    def run_reached(self, planned: PlannedRun) -> None:
        self._bars().advance(self._overall)

    def run_launched(self, planned: PlannedRun, windows: int) -> None:
        self._current = self._bars().add_task(
            f"  {planned.label} ({planned.mode}, seed {planned.seed}, {planned.nproc}x)",
            total=windows, unit="windows", rate="",
        )  # fmt: skip

    def run_progress(self, windows_done: int, rate: str) -> None:
        self._bars().update(self._current, completed=windows_done, rate=rate)

    @contextmanager
    def data_check(self, root: Path) -> Iterator[TaskBar]:
        with job_bars(self._console, f"verifying {root}") as (bar,):
            yield bar

    def plan_finished(self) -> None:
        self._bars().stop()
        self._progress = None

    def _bars(self) -> Progress:
        if self._progress is None:
            raise RuntimeError("progress reported outside a plan")
        return self._progress


class TaskBar:
    """One task of a rich Progress as the core's Progress (total, then advance)."""

    def __init__(self, progress: Progress, description: str) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=None)

    def total(self, n: int) -> None:
        self._progress.update(self._task, total=n)

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)


@contextmanager
def job_bars(console: Console, *descriptions: str) -> Iterator[list[TaskBar]]:
    """One bar per step of a long job on console (files converted, bytes hashed), in one live
    display: rich allows one at a time."""
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=True) as progress:
        yield [TaskBar(progress, description) for description in descriptions]
