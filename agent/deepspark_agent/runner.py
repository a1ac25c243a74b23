"""Execute a run set: the planned runs in order, each recorded (run.json) as it ends.

The runner is the run state machine (keep what was recorded, redo what was cut off, stop
starting runs when the budget is spent); it tells a `RunProgress` what it does, and the
terminal's bars (`progress.Bars`) are one such listener.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

from deepspark_agent import nodes
from deepspark_agent.planning import Request, make_plan
from deepspark_agent.runtime.base import Launch, Runtime
from deepspark_core.assess import assess
from deepspark_core.contract import CHECKPOINT_FILE, RunSpec
from deepspark_core.datasets import MANIFEST, verify_manifest
from deepspark_core.datasets import Progress as DataProgress
from deepspark_core.events import TOKEN, parse_line
from deepspark_core.files import stamped_path, write_json
from deepspark_core.results import (
    EVENTS_FILE,
    IDLE_FILE,
    PLAN_FILE,
    RESULT_FILE,
    RUN_FILE,
    PlannedRun,
    Result,
    RunPlan,
    RunRecord,
    SchemaError,
    read_model,
)
from deepspark_core.runset import AGENT_LOG

log = logging.getLogger("deepspark_agent")


class RunProgress(Protocol):
    """What the runner reports while it works through a plan, in this order: plan_started,
    then per run reached (every run, counted as it starts, so a count ends full), for a run
    that is launched run_launched and run_progress as its windows go by; plan_finished."""

    def plan_started(self, plan: RunPlan) -> None: ...

    def run_reached(self, planned: PlannedRun) -> None: ...

    def run_launched(self, planned: PlannedRun, windows: int) -> None: ...

    def run_progress(self, windows_done: int, rate: str) -> None: ...

    def plan_finished(self) -> None: ...

    def data_check(self, root: Path) -> AbstractContextManager[DataProgress]:
        """Shows the hashing of a dataset's files, before plan_started."""
        ...


def run_set_dir(out_root: Path, req: Request) -> Path:
    """A new directory name under out_root: model, config, mode and the time."""
    return stamped_path(out_root, f"{req.workload.name}-{req.config}-{req.mode}")


class _LiveLog:
    """Follows a growing mllog.log for progress: windows done, the last one's speed."""

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
    progress: RunProgress,
    runtime: Runtime,
    runs: list[PlannedRun],
    idle: Path | None = None,
) -> Result:
    """Run the plan into run_set (see run_plan), assess it and write its result."""
    run_plan(req, run_set, progress, runtime, runs, idle)
    result = assess(run_set)
    write_json(run_set / RESULT_FILE, result)
    return result


def run_plan(
    req: Request,
    run_set: Path,
    progress: RunProgress,
    runtime: Runtime,
    runs: list[PlannedRun],
    idle: Path | None = None,
) -> RunPlan:
    """Run the plan into run_set, each run recorded as it ends. If run_set already holds a
    plan (an interrupted run set), keep that plan: skip the runs it recorded, redo the one
    cut off. idle: the idle floor's recording, copied into a new run set (signed with it)."""
    verified = _verify_data(req.data_dir, progress)  # before a plan: bad data starts nothing
    if (run_set / PLAN_FILE).is_file():
        plan = read_model(run_set / PLAN_FILE, RunPlan)
        if plan.model != req.workload.name:
            raise SchemaError(f"{run_set} holds a run set of {plan.model}, not {req.workload.name}")
    else:
        plan = make_plan(req, runtime.name, runs)
        run_set.mkdir(parents=True)
        write_json(run_set / PLAN_FILE, plan)
        if idle is not None:
            shutil.copyfile(idle, run_set / IDLE_FILE)
    with _agent_log(run_set):
        log.info("run set %s: %s", run_set, plan.model_dump_json())
        if verified:
            log.info("data %s verified: manifest sha256 %s", req.data_dir, verified)
        _run_all(req, plan, run_set, runtime, progress, verified)
    return plan


def _verify_data(data_dir: Path | None, progress: RunProgress) -> str | None:
    """A dataset's manifest digest, its files verified once here (the host's cache makes a
    second time a stat of each file) rather than by every rank of every run; None for no
    dataset (a directory without a manifest is the workload's to judge)."""
    if data_dir is None or not (data_dir / MANIFEST).is_file():
        return None
    with progress.data_check(data_dir) as bar:
        return verify_manifest(data_dir, bar)[0]


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
    req: Request,
    plan: RunPlan,
    run_set: Path,
    runtime: Runtime,
    progress: RunProgress,
    data_verified: str | None,
) -> None:
    """Each planned run in order: kept if recorded, redone if cut off, not started once the
    budget is spent, else launched."""
    preset = req.workload.preset(plan.config)
    max_seconds = req.max_seconds or preset.max_seconds
    deadline = time.monotonic() + req.budget_s if req.budget_s else math.inf
    progress.plan_started(plan)
    try:
        for planned in plan.runs:
            progress.run_reached(planned)
            run_dir = run_set / planned.label
            if (run_dir / RUN_FILE).is_file():
                log.info("%s: recorded before, kept", planned.label)
                continue
            if run_dir.exists():  # cut off before its record: its artifacts are partial
                log.info("%s: cut off before, run again", planned.label)
                runtime.reap(run_dir)
                shutil.rmtree(run_dir)
            run_dir.mkdir()
            left = deadline - time.monotonic()
            if left < 1:
                _not_started(planned, run_dir, runtime.name, req.budget_s)
                continue
            spec = RunSpec(
                model=plan.model, config=plan.config, mode=planned.mode, seed=planned.seed,
                batch_size=plan.batch_size, precision=plan.precision, nproc=planned.nproc,
                warmup_windows=plan.warmup_windows, windows=plan.windows,
                max_seconds=min(max_seconds, left), data_verified=data_verified,
                scenario=planned.scenario or "offline", engine=planned.engine or "eager",
            )  # fmt: skip
            timed = plan.warmup_windows + plan.windows  # speed and infer runs
            windows = preset.epochs if planned.mode == "converge" else timed
            progress.run_launched(planned, windows)
            _launch(req, planned, spec, run_dir, runtime, progress)
    finally:
        progress.plan_finished()


def _not_started(planned: PlannedRun, run_dir: Path, runtime: str, budget_s: float | None) -> None:
    log.info("%s: not started, the time budget is spent", planned.label)
    record = RunRecord(
        label=planned.label, seed=planned.seed, nproc=planned.nproc, exit_code=None, wall_s=0.0,
        started=False, error=f"not started: the {budget_s:g} s budget was spent",
        mono_offset_ns=time.monotonic_ns() - time.time_ns(), runtime=runtime,
    )  # fmt: skip
    write_json(run_dir / RUN_FILE, record)


def _checkpoint(req: Request, planned: PlannedRun, run_set: Path) -> Path | None:
    """The weights an infer run loads: the checkpoint its plan names (that run's, written at
    its end: missing when it failed, and then random weights, as the row says), else the
    request's own file; nothing for the other modes."""
    if planned.mode != "infer":
        return None
    if planned.checkpoint_from:
        written = run_set / planned.checkpoint_from / CHECKPOINT_FILE
        if not written.is_file():
            log.info("%s: %s wrote no checkpoint: random weights", planned.label, written.parent)
        return written if written.is_file() else None
    return req.checkpoint


def _launch(
    req: Request,
    planned: PlannedRun,
    spec: RunSpec,
    run_dir: Path,
    runtime: Runtime,
    progress: RunProgress,
) -> None:
    """One run in the runtime, its windows reported as they pass; its run.json at the end."""
    live = _LiveLog(run_dir / EVENTS_FILE)
    mono_offset_ns = time.monotonic_ns() - time.time_ns()
    log.info("%s: starting seed %d on %d rank(s)", planned.label, planned.seed, planned.nproc)
    cluster = req.cluster if planned.nnodes > 1 else None
    image = req.image.tag if req.image else None
    weights = _checkpoint(req, planned, run_dir.parent)
    outcome = runtime.run(
        Launch(req.workload, spec, run_dir, req.data_dir, cluster, image, weights),
        on_tick=lambda: progress.run_progress(live.poll(), live.rate),
    )
    progress.run_progress(live.poll(), live.rate)
    clocks = {}
    if cluster and cluster.peers and cluster.node_rank == 0:  # every node's telemetry
        clocks = nodes.gather(run_dir, cluster.peers, cluster.nnodes, mono_offset_ns)
    record = RunRecord(
        label=planned.label, seed=planned.seed, nproc=planned.nproc,
        exit_code=outcome.exit_code, wall_s=round(outcome.wall_s, 3), error=outcome.error,
        timed_out=outcome.timed_out, mono_offset_ns=mono_offset_ns, runtime=runtime.name,
        image=outcome.image, node_clock_ns=clocks,
    )  # fmt: skip
    write_json(run_dir / RUN_FILE, record)
    log.info("%s: exit %s after %.1f s %s", planned.label, outcome.exit_code, outcome.wall_s,
             outcome.error or "")  # fmt: skip
