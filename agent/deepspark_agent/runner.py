"""Execute a run set: the planned runs in order, each recorded (run.json) as it ends."""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from deepspark_agent import __version__
from deepspark_agent.devices import describe_system
from deepspark_agent.runtime.base import Cluster, Launch, Runtime
from deepspark_agent.workloads import Workload, folder_digest
from deepspark_core.assess import assess
from deepspark_core.contract import Mode, Precision, RunSpec
from deepspark_core.events import TOKEN, parse_line
from deepspark_core.files import stamped_path, write_json
from deepspark_core.results import (
    EVENTS_FILE,
    PLAN_FILE,
    RESULT_FILE,
    RUN_FILE,
    ImageRef,
    Implementation,
    PlannedRun,
    QualityTarget,
    Result,
    RunPlan,
    RunRecord,
    SchemaError,
    read_model,
)
from deepspark_core.runset import AGENT_LOG

log = logging.getLogger("deepspark_agent")


@dataclass(frozen=True)
class Request:
    """A `run` as the user asked for it; presets fill what is left unset."""

    workload: Workload
    config: str = "mini"
    mode: Mode = "converge"
    runs: int = 1
    nproc: int = 1
    seed: int = 0
    batch_size: int | None = None
    precision: Precision = "fp32"
    tolerance: float = 0.01
    warmup_windows: int = 1
    windows: int = 5
    max_seconds: float | None = None  # each run's; None: the preset's
    budget_s: float | None = None  # all of the run set's runs together
    data_dir: Path | None = None
    cluster: Cluster | None = None  # this node's place in the plan's multi-node runs
    image: ImageRef | None = None  # a vendor's image, run instead of the workload's own


BASELINE_LABEL = "baseline-1x"


def planned_runs(req: Request) -> list[PlannedRun]:
    """`run`'s runs: distinct seeds at nproc, then a 1-rank baseline for card linearity."""
    runs = [
        PlannedRun(label=f"run-{i + 1}", mode=req.mode, seed=req.seed + i, nproc=req.nproc)
        for i in range(req.runs)
    ]
    if req.nproc > 1:
        runs.append(PlannedRun(label=BASELINE_LABEL, mode=req.mode, seed=req.seed, nproc=1))
    return runs


def implementation(req: Request) -> Implementation:
    """What the plan measures: a vendor's image, or a workload folder pinned by its digest."""
    if req.image:
        return Implementation(
            origin="vendor", kind="image", source=req.image.tag, digest=req.image.id,
            repo_digests=req.image.repo_digests,
        )  # fmt: skip
    workload = req.workload
    return Implementation(
        origin="reference" if workload.reference else "vendor", kind="folder",
        source=str(workload.path), digest=folder_digest(workload.path),
    )  # fmt: skip


def make_plan(req: Request, runtime: str, runs: list[PlannedRun] | None = None) -> RunPlan:
    preset = req.workload.preset(req.config)
    runs = runs or planned_runs(req)
    return RunPlan(
        agent_version=__version__,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        model=req.workload.name,
        implements=req.workload.model,
        # A vendor's image declares no framework: its `framework` event says which it ran.
        framework=None if req.image else req.workload.framework,
        implementation=implementation(req),
        task=req.workload.task,
        config=req.config,
        precision=req.precision,
        batch_size=req.batch_size or preset.batch_size,
        nproc=req.nproc,
        nnodes=max(r.nnodes for r in runs),
        runs=runs,
        warmup_windows=req.warmup_windows,
        windows=req.windows,
        tolerance=req.tolerance,
        runtime=runtime,
        quality=QualityTarget(
            metric=req.workload.quality.metric,
            direction=req.workload.quality.direction,
            target=preset.target,
        ),
        system=describe_system(),
    )


def run_set_dir(out_root: Path, req: Request) -> Path:
    """A new directory name under out_root: model, config, mode and the time."""
    return stamped_path(out_root, f"{req.workload.name}-{req.config}-{req.mode}")


class _LiveLog:
    """Follows a growing mllog.log for the live display: windows done, the last one's speed."""

    def __init__(self, path: Path) -> None:
        self._path, self._offset = path, 0
        self.windows, self.rate, self._start_ns = 0, "", None

    def poll(self) -> int:
        try:
            with self._path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return self.windows
        done = chunk.rfind(b"\n") + 1  # only whole lines; the rest is read next time
        self._offset += done
        for line in chunk[:done].decode(errors="replace").splitlines():
            event = parse_line(line, 0) if TOKEN in line else None
            if event is None:
                continue
            if event.key == "block_start":
                self._start_ns = event.t_ns
            elif event.key == "block_stop":
                self.windows += 1
                samples, stop_ns = event.metadata.get("samples_count"), event.t_ns
                if isinstance(samples, int | float) and self._start_ns and stop_ns:
                    seconds = (stop_ns - self._start_ns) / 1e9
                    self.rate = f"{samples / seconds:,.1f} samples/s" if seconds > 0 else ""
        return self.windows


def execute(
    req: Request,
    run_set: Path,
    console: Console,
    runtime: Runtime,
    runs: list[PlannedRun] | None = None,
) -> Result:
    """Run the plan into run_set (see run_plan), assess it and write its result."""
    run_plan(req, run_set, console, runtime, runs)
    result = assess(run_set)
    write_json(run_set / RESULT_FILE, result)
    return result


def run_plan(
    req: Request,
    run_set: Path,
    console: Console,
    runtime: Runtime,
    runs: list[PlannedRun] | None = None,
) -> RunPlan:
    """Run the plan into run_set, each run recorded as it ends. If run_set already holds a
    plan (an interrupted run set), keep that plan: skip the runs it recorded, redo the one
    cut off."""
    if (run_set / PLAN_FILE).is_file():
        plan = read_model(run_set / PLAN_FILE, RunPlan)
        if plan.model != req.workload.name:
            raise SchemaError(f"{run_set} holds a run set of {plan.model}, not {req.workload.name}")
    else:
        plan = make_plan(req, runtime.name, runs)
        run_set.mkdir(parents=True)
        write_json(run_set / PLAN_FILE, plan)
    with _agent_log(run_set):
        log.info("run set %s: %s", run_set, plan.model_dump_json())
        _run_all(req, plan, run_set, runtime, console)
    return plan


@contextmanager
def _agent_log(run_set: Path) -> Iterator[None]:
    """The agent's log lines about this run set, in its agent.log (appended: resumes add)."""
    handler = logging.FileHandler(run_set / AGENT_LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


def _run_all(
    req: Request, plan: RunPlan, run_set: Path, runtime: Runtime, console: Console
) -> None:
    preset = req.workload.preset(plan.config)
    max_seconds = req.max_seconds or preset.max_seconds
    deadline = time.monotonic() + req.budget_s if req.budget_s else math.inf
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        overall = progress.add_task(
            f"{plan.model}: runs", total=len(plan.runs), unit="runs", rate=""
        )
        for planned in plan.runs:
            progress.advance(overall)  # counted as it starts, so that the bar ends full
            label, seed, nproc = planned.label, planned.seed, planned.nproc
            run_dir = run_set / label
            if (run_dir / RUN_FILE).is_file():
                log.info("%s: recorded before, kept", label)
                continue
            if run_dir.exists():  # cut off before its record: its artifacts are partial
                log.info("%s: cut off before, run again", label)
                runtime.reap(run_dir)
                shutil.rmtree(run_dir)
            run_dir.mkdir()
            left = deadline - time.monotonic()
            if left < 1:
                log.info("%s: not started, the time budget is spent", label)
                record = RunRecord(
                    label=label, seed=seed, nproc=nproc, exit_code=None, wall_s=0.0, started=False,
                    error=f"not started: the {req.budget_s:g} s budget was spent",
                    mono_offset_ns=time.monotonic_ns() - time.time_ns(), runtime=runtime.name,
                )  # fmt: skip
                write_json(run_dir / RUN_FILE, record)
                continue
            speed_windows = plan.warmup_windows + plan.windows
            windows = speed_windows if planned.mode == "speed" else preset.epochs
            spec = RunSpec(
                model=plan.model, config=plan.config, mode=planned.mode, seed=seed,
                batch_size=plan.batch_size, precision=plan.precision, nproc=nproc,
                warmup_windows=plan.warmup_windows, windows=plan.windows,
                max_seconds=min(max_seconds, left),
            )  # fmt: skip
            task = progress.add_task(
                f"  {label} ({planned.mode}, seed {seed}, {nproc}x)",
                total=windows, unit="windows", rate="",
            )  # fmt: skip
            live = _LiveLog(run_dir / EVENTS_FILE)
            mono_offset_ns = time.monotonic_ns() - time.time_ns()
            log.info("%s: starting seed %d on %d rank(s)", label, seed, nproc)
            cluster = req.cluster if planned.nnodes > 1 else None
            image = req.image.tag if req.image else None
            outcome = runtime.run(
                Launch(req.workload, spec, run_dir, req.data_dir, cluster, image),
                # Called within this iteration only; defaults bind this run's bar and counter.
                on_tick=lambda t=task, v=live: progress.update(t, completed=v.poll(), rate=v.rate),
            )
            progress.update(task, completed=live.poll(), rate=live.rate)
            record = RunRecord(
                label=label, seed=seed, nproc=nproc, exit_code=outcome.exit_code,
                wall_s=round(outcome.wall_s, 3), error=outcome.error, timed_out=outcome.timed_out,
                mono_offset_ns=mono_offset_ns, runtime=runtime.name, image=outcome.image,
            )  # fmt: skip
            write_json(run_dir / RUN_FILE, record)
            log.info("%s: exit %s after %.1f s %s", label, outcome.exit_code, outcome.wall_s,
                     outcome.error or "")  # fmt: skip
