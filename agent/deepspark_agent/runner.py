"""Execute a run set: the stability runs (distinct seeds), a 1-rank baseline for linearity."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from deepspark_agent import __version__
from deepspark_agent.assess import BASELINE_LABEL, assess
from deepspark_agent.contract import Mode, Precision, RunSpec
from deepspark_agent.devices import describe_system
from deepspark_agent.files import write_json
from deepspark_agent.results import (
    EVENTS_FILE,
    PLAN_FILE,
    RESULT_FILE,
    RUN_FILE,
    QualityTarget,
    Result,
    RunPlan,
    RunRecord,
)
from deepspark_agent.runtime.base import Launch, Runtime
from deepspark_agent.workloads import Workload

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
    max_seconds: float | None = None
    data_dir: Path | None = None


def make_plan(req: Request, runtime: str) -> RunPlan:
    preset = req.workload.preset(req.config)
    return RunPlan(
        agent_version=__version__,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        model=req.workload.name,
        task=req.workload.task,
        config=req.config,
        mode=req.mode,
        precision=req.precision,
        batch_size=req.batch_size or preset.batch_size,
        nproc=req.nproc,
        seeds=[req.seed + i for i in range(req.runs)],
        baseline_seed=req.seed if req.nproc > 1 else None,
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


def run_set_dir(out_root: Path, plan: RunPlan) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = out_root / f"{plan.model}-{plan.config}-{plan.mode}-{stamp}"
    path, n = base, 1
    while path.exists():  # two run sets in the same second
        n += 1
        path = base.with_name(f"{base.name}.{n}")
    return path


class _WindowCounter:
    """Counts finished windows in a growing mllog.log, for the progress bar."""

    def __init__(self, path: Path) -> None:
        self._path, self._offset, self.count = path, 0, 0

    def poll(self) -> int:
        try:
            with self._path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return self.count
        done = chunk.rfind(b"\n") + 1  # only whole lines; the rest is read next time
        self._offset += done
        self.count += sum(chunk[:done].count(k) for k in (b'"block_stop"', b'"epoch_stop"'))
        return self.count


def execute(
    req: Request, out_root: Path, console: Console, runtime: Runtime
) -> tuple[Path, Result]:
    plan = make_plan(req, runtime.name)
    run_set = run_set_dir(out_root, plan)
    run_set.mkdir(parents=True)
    write_json(run_set / PLAN_FILE, plan)
    handler = logging.FileHandler(run_set / "agent.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("run set %s: %s", run_set, plan.model_dump_json())
        _run_all(req, plan, run_set, runtime, console)
        result = assess(run_set)
        write_json(run_set / RESULT_FILE, result)
        log.info("result written to %s", run_set / RESULT_FILE)
    finally:
        log.removeHandler(handler)
        handler.close()
    return run_set, result


def _run_all(
    req: Request, plan: RunPlan, run_set: Path, runtime: Runtime, console: Console
) -> None:
    runs = [(f"run-{i}", seed, plan.nproc) for i, seed in enumerate(plan.seeds, start=1)]
    if plan.baseline_seed is not None:
        runs.append((BASELINE_LABEL, plan.baseline_seed, 1))
    preset = req.workload.preset(plan.config)
    windows = plan.warmup_windows + plan.windows if plan.mode == "speed" else preset.epochs
    max_seconds = req.max_seconds or preset.max_seconds
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("windows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        for label, seed, nproc in runs:
            run_dir = run_set / label
            run_dir.mkdir()
            spec = RunSpec(
                model=plan.model, config=plan.config, mode=plan.mode, seed=seed,
                batch_size=plan.batch_size, precision=plan.precision, nproc=nproc,
                warmup_windows=plan.warmup_windows, windows=plan.windows, max_seconds=max_seconds,
            )  # fmt: skip
            task = progress.add_task(f"{plan.model} {label} seed {seed} x{nproc}", total=windows)
            counter = _WindowCounter(run_dir / EVENTS_FILE)
            mono_offset_ns = time.monotonic_ns() - time.time_ns()
            log.info("%s: starting seed %d on %d rank(s)", label, seed, nproc)
            outcome = runtime.run(
                Launch(req.workload, spec, run_dir, req.data_dir),
                # Called within this iteration only; defaults bind this run's bar and counter.
                on_tick=lambda t=task, c=counter: progress.update(t, completed=c.poll()),
            )
            progress.update(task, completed=counter.poll())
            record = RunRecord(
                label=label, seed=seed, nproc=nproc, exit_code=outcome.exit_code,
                wall_s=round(outcome.wall_s, 3), error=outcome.error, timed_out=outcome.timed_out,
                mono_offset_ns=mono_offset_ns, runtime=runtime.name, image=outcome.image,
            )  # fmt: skip
            write_json(run_dir / RUN_FILE, record)
            log.info("%s: exit %s after %.1f s %s", label, outcome.exit_code, outcome.wall_s,
                     outcome.error or "")  # fmt: skip
