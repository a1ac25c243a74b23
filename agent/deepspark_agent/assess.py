"""Turn a run set's raw artifacts into the six dimensions.

Everything here reads files the runs left behind and calls the pure metrics engine, so a
result can be recomputed at any time (`deepspark-agent report`), by anyone who has the files.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from deepspark_agent import metrics
from deepspark_agent.events import EventLog, EventLogError, read_events
from deepspark_agent.results import (
    EVENTS_FILE,
    PLAN_FILE,
    RUN_FILE,
    STDOUT_FILE,
    TELEMETRY_FILE,
    Dimensions,
    Figures,
    Linearity,
    Result,
    RunPlan,
    RunRecord,
    RunSummary,
    SchemaError,
    read_model,
)
from deepspark_agent.telemetry import load_series, sample_rate_hz

BASELINE_LABEL = "baseline-1x"


def run_dirs(run_set: Path) -> list[Path]:
    """The stability set's runs in order: run-1, run-2, ..."""
    dirs = [d for d in run_set.glob("run-*") if d.is_dir() and d.name[4:].isdigit()]
    return sorted(dirs, key=lambda d: int(d.name[4:]))


def event_log_path(run_dir: Path) -> Path:
    """The workload's own mllog.log, else its stdout (a container may only print events)."""
    mllog = run_dir / EVENTS_FILE
    return mllog if mllog.is_file() and mllog.stat().st_size else run_dir / STDOUT_FILE


def assess_run(run_dir: Path, plan: RunPlan) -> RunSummary:
    record = read_model(run_dir / RUN_FILE, RunRecord)
    head = record.model_dump(include={"label", "seed", "nproc", "image"})
    try:
        log = read_events(event_log_path(run_dir))
    except EventLogError as exc:
        reason = record.error or str(exc)
        return RunSummary(**head, status="aborted", reason=reason)

    status, reason = log.status
    if record.error:  # the runtime's account (timeout, OOM kill) wins over the log's
        status, reason = "aborted", record.error
    elif record.exit_code != 0:
        said = "run_stop success" if status == "success" else reason
        status, reason = "aborted", f"exit code {record.exit_code} ({said})"

    notes: list[str] = []
    windows = log.windows(record.mono_offset_ns)
    measured = windows[plan.warmup_windows :]
    summary = {
        **head,
        "status": status,
        "reason": reason,
        "events": len(log.events),
        "malformed_lines": log.malformed,
        "accuracy": _final_quality(log),
        "framework": _framework(log),
        "dataset": _dataset(log),
        "end_to_end_speed": _end_to_end_speed(log, windows),
    }
    try:
        summary["speed"] = metrics.speed(measured)
    except metrics.MetricError as exc:
        notes.append(f"speed: {exc}")
    if measured:
        summary.update(_telemetry(run_dir / TELEMETRY_FILE, measured, notes))
    return RunSummary(**summary, notes=notes)


def _final_quality(log: EventLog) -> float | None:
    last = log.last("eval_accuracy")
    return float(last.value) if last and isinstance(last.value, int | float) else None


def _framework(log: EventLog) -> str | None:
    event = log.first("framework")
    if event is None:
        return None
    device = event.metadata.get("device")
    return f"{event.value} ({device})" if device else str(event.value)


def _dataset(log: EventLog) -> str | None:
    """Which data the run trained on: the workload's name for it and its sha256."""
    event = log.first("dataset")
    digest = event.metadata.get("sha256") if event else None
    return f"{event.value} sha256:{digest}" if isinstance(digest, str) else None


def _end_to_end_speed(log: EventLog, windows: list[metrics.Window]) -> float | None:
    """All trained samples over run_start..run_stop (warm-up and evaluation included)."""
    start, stop = log.first("run_start"), log.last("run_stop")
    if not (start and stop and windows):
        return None
    seconds = (stop.time_ms - start.time_ms) / 1e3
    if start.t_ns is not None and stop.t_ns is not None:
        seconds = (stop.t_ns - start.t_ns) / 1e9
    try:
        return metrics.end_to_end_speed(sum(w.samples for w in windows), seconds)
    except metrics.MetricError:
        return None


def _telemetry(path: Path, measured: list[metrics.Window], notes: list[str]) -> dict:
    """Power and memory over the measured windows, from the most specific scope recorded."""
    out: dict = {}
    samples = sum(w.samples for w in measured)
    for name, metric in (("power", "power_w"), ("memory", "mem_used_bytes")):
        found = load_series(path, metric)
        if found is None:
            notes.append(f"{name}: no sensor recorded {metric} for this run")
            continue
        scope, series = found
        devices = [series[d] for d in sorted(series)]
        try:
            if name == "power":
                out[name] = metrics.power(devices, measured, samples)
            else:
                out[name] = metrics.memory(devices, measured)
        except metrics.MetricError as exc:
            notes.append(str(exc))
            continue
        out[f"{name}_scope"] = scope
        out["telemetry_hz"] = sample_rate_hz(devices[0])
    counters = load_series(path, "energy_j")
    if counters is not None:
        try:
            out["energy_counter_j"] = metrics.counter_energy_j(list(counters[1].values()), measured)
        except metrics.MetricError as exc:
            notes.append(str(exc))
    return out


def assess(run_set: Path) -> Result:
    """Recompute a run set's result from its files."""
    if not (run_set / PLAN_FILE).is_file():
        raise SchemaError(f"{run_set}: not a run directory (no {PLAN_FILE})")
    plan = read_model(run_set / PLAN_FILE, RunPlan)
    runs = [assess_run(d, plan) for d in run_dirs(run_set)]
    if not runs:
        raise SchemaError(f"{run_set}: no runs recorded yet")
    baseline_dir = run_set / BASELINE_LABEL
    baseline = assess_run(baseline_dir, plan) if (baseline_dir / RUN_FILE).is_file() else None
    notes: list[str] = []
    dims = _dimensions(plan, runs, baseline, notes)
    return Result(plan=plan, runs=runs, baseline=baseline, dimensions=dims, notes=notes)


def _dimensions(
    plan: RunPlan, runs: list[RunSummary], baseline: RunSummary | None, notes: list[str]
) -> Dimensions:
    ok = [r for r in runs if r.status == "success"]
    if not ok:
        notes.append("every run failed: " + "; ".join(f"{r.label}: {r.reason}" for r in runs))
        return Dimensions()
    dims: dict = {}

    # Speed, power and memory all come from one run, the median-speed one, so that J/sample
    # and memory describe the same run as the speed printed beside them.
    timed = [r for r in ok if r.speed is not None]
    if timed:
        median = statistics.median_low(r.speed.value for r in timed)
        rep = next(r for r in timed if r.speed.value == median)
        dims |= {name: getattr(rep, name) for name in Figures.model_fields}
        notes += [f"{rep.label}: {n}" for n in rep.notes if not n.startswith("speed")]
    else:
        notes.append("speed: no successful run has enough measured windows")

    if plan.mode == "converge":
        values = [r.accuracy for r in ok if r.accuracy is not None]
        if values:
            q = plan.quality
            dims["accuracy"] = metrics.accuracy(statistics.median(values), q.target, q.direction)
        else:
            notes.append("accuracy: no run logged eval_accuracy")
        if len(runs) >= 2:
            finals = [r.accuracy if r.status == "success" else None for r in runs]
            try:
                dims["stability"] = metrics.stability(finals, plan.tolerance)
            except metrics.MetricError as exc:
                notes.append(str(exc))
        else:
            notes.append("stability: needs at least 2 converge runs (DeepSpark uses 5)")
    else:
        notes.append("accuracy and stability: measured in converge mode only")

    if plan.nproc > 1:
        if baseline and baseline.status == "success" and baseline.speed and "speed" in dims:
            card = metrics.linearity(dims["speed"].value, plan.nproc, baseline.speed.value)
            dims["linearity"] = Linearity(
                card=card, devices=plan.nproc, speed_1=baseline.speed.value
            )
        else:
            notes.append("linearity: the 1-rank baseline run gave no speed")
    return Dimensions(**dims)
