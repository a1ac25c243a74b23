"""The terminal's progress bars for a run set: one `RunProgress` (the runner's listener)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
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

    def plan_finished(self) -> None:
        self._bars().stop()
        self._progress = None

    def _bars(self) -> Progress:
        if self._progress is None:
            raise RuntimeError("progress reported outside a plan")
        return self._progress
