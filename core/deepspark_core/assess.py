"""Turn a run set's raw artifacts into the six dimensions.

Everything here reads files the runs left behind and calls the pure metrics engine, so a
result can be recomputed at any time (`deepspark-agent report`), by anyone who has the files.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from pathlib import Path

from deepspark_core import metrics
from deepspark_core.contract import (
    CHECKPOINT_EVENT,
    RANDOM_WEIGHTS,
    SYNTHETIC_DATA,
    WEIGHTS_EVENT,
)
from deepspark_core.events import Event, EventLog, EventLogError, read_events
from deepspark_core.node_power import idle_floor, node_sources
from deepspark_core.results import (
    EVENTS_FILE,
    PLAN_FILE,
    RUN_FILE,
    STDOUT_FILE,
    Dimensions,
    Figures,
    Inference,
    Linearity,
    NodeFigures,
    PlannedRun,
    QualityTarget,
    Result,
    RunPlan,
    RunRecord,
    RunSummary,
    SchemaError,
    read_model,
)
from deepspark_core.series import NODE, load_nodes, sample_rate_hz


def event_log_path(run_dir: Path) -> Path:
    """The workload's own mllog.log, else its stdout (a container may only print events)."""
    mllog = run_dir / EVENTS_FILE
    return mllog if mllog.is_file() and mllog.stat().st_size else run_dir / STDOUT_FILE


def assess_run(run_dir: Path, planned: PlannedRun, plan: RunPlan) -> RunSummary:
    record = read_model(run_dir / RUN_FILE, RunRecord)
    if (record.label, record.seed, record.nproc) != (planned.label, planned.seed, planned.nproc):
        raise SchemaError(f"{run_dir / RUN_FILE} does not record the run {plan.model} planned")
    head = {**planned.model_dump(), "image": record.image}
    cut = record.timed_out or not record.started  # the agent's budget, not the workload
    try:
        log = read_events(event_log_path(run_dir))
    except EventLogError as exc:
        reason = record.error or str(exc)
        return RunSummary(**head, status="incomplete" if cut else "aborted", reason=reason)

    status, reason = log.status
    if cut:
        status, reason = "incomplete", record.error or "killed at its time budget"
    elif record.error:  # the runtime's account (OOM kill) wins over the log's
        status, reason = "aborted", record.error
    elif record.exit_code != 0:
        said = "run_stop success" if status == "success" else reason
        status, reason = "aborted", f"exit code {record.exit_code} ({said})"
    accuracy = _final_quality(log)
    if accuracy is not None and not math.isfinite(accuracy):
        if status == "success":  # a failed run: outside the stability band, not the set's end
            status, reason = "aborted", f"final eval_accuracy is {accuracy}, not a finite number"
        accuracy = None  # never written: JSON has no NaN

    notes: list[str] = []
    try:
        windows = log.windows(record.mono_offset_ns)
    except EventLogError as exc:  # a log that would lie measures nothing
        windows, speed_na = [], str(exc)
    else:
        speed_na = None
    measured = windows[plan.warmup_windows :]
    summary = {
        **head,
        "status": status,
        "reason": reason,
        "events": len(log.events),
        "malformed_lines": log.malformed,
        "accuracy": accuracy,
        "framework": _framework(log),
        **_dataset(log),
        "data_loader": _data_loader(log),
        "end_to_end_speed": _end_to_end_speed(log, windows),
    }
    if speed_na is None:
        try:
            summary["speed"] = metrics.speed(measured)
        except metrics.MetricError as exc:
            speed_na = str(exc)
    if speed_na is not None:
        summary["speed_na"] = speed_na
        notes.append(f"speed: {speed_na}")
    if measured:
        summary["loader"] = _loader(measured, notes)
        summary.update(_telemetry(run_dir, record, planned.nnodes, measured, notes))
    if planned.mode == "infer":
        summary["inference"] = _inference(log, plan, planned, measured, summary)
    else:
        summary["start_weights"] = _start_weights(log)
    global_batch = plan.batch_size * planned.nproc * planned.nnodes
    if planned.mode == "converge" and plan.quality.reference_batch == global_batch:
        summary["epochs_to_target"] = epochs_to_target(log, plan.quality)
    summary["checkpoint"] = _sha256(log.last(CHECKPOINT_EVENT))
    return RunSummary(**summary, notes=notes)


def _sha256(event: Event | None) -> str | None:
    """An event's metadata sha256 as "sha256:<hex>", when it has one."""
    digest = event.metadata.get("sha256") if event else None
    return f"sha256:{digest}" if isinstance(digest, str) else None


def _start_weights(log: EventLog) -> str | None:
    """What a training run started from, where it logged it: "<name> checkpoint sha256:...",
    or "random"."""
    loaded = log.first(WEIGHTS_EVENT)
    if loaded is None or loaded.value == RANDOM_WEIGHTS:
        return None if loaded is None else RANDOM_WEIGHTS
    name = loaded.metadata.get("name")
    named = f"{name} {loaded.value}" if isinstance(name, str) and name else str(loaded.value)
    return " ".join(filter(None, [named, _sha256(loaded)]))


def _inference(
    log: EventLog, plan: RunPlan, planned: PlannedRun, measured: list[metrics.Window], run: dict
) -> Inference:
    """An infer run's latency, accuracy against the target and energy per inference."""
    loaded = log.first(WEIGHTS_EVENT)
    if loaded is None:
        weights = "not logged"
    elif loaded.value == RANDOM_WEIGHTS:
        weights = RANDOM_WEIGHTS
    else:
        weights = " ".join(filter(None, [str(loaded.value), _sha256(loaded)]))
    figures: dict = {
        "batch_size": 1 if planned.scenario == "latency" else plan.batch_size,
        "weights": weights,
    }
    try:
        figures["latency"] = metrics.latency(log.latencies(w.number for w in measured))
    except (EventLogError, metrics.MetricError) as exc:
        figures["latency_na"] = str(exc)
    if weights == RANDOM_WEIGHTS:
        figures["accuracy_na"] = "random weights (no checkpoint): says nothing of the model"
    elif run["accuracy"] is None:
        figures["accuracy_na"] = "no finite eval_accuracy logged"
    else:
        q = plan.quality
        figures["accuracy"] = metrics.accuracy(run["accuracy"], q.target, q.direction)
    samples = sum(w.samples for w in measured)
    if run.get("power"):
        figures["j_per_inference"] = run["power"].j_per_sample
    if run.get("energy_counter_j") is not None and samples:
        figures["counter_j_per_inference"] = run["energy_counter_j"] / samples
    return Inference(**figures)


def epochs_to_target(log: EventLog, q: QualityTarget) -> int | None:
    """The first epoch whose logged evaluation reached the target (each eval_accuracy's
    epoch_num); an evaluation without a whole epoch number or a numeric value is skipped."""
    evaluations = []
    for event in log.all("eval_accuracy"):
        epoch, value = event.metadata.get("epoch_num"), event.value
        if type(epoch) is int and type(value) in (int, float):  # a bool is no number
            with contextlib.suppress(OverflowError):  # an integer beyond any float
                evaluations.append((epoch, float(value)))
    return metrics.epochs_to_target(evaluations, q.target, q.direction)


def _final_quality(log: EventLog) -> float | None:
    """The last eval_accuracy, non-finite values included (the caller judges them)."""
    last = log.last("eval_accuracy")
    value = last.value if last else None
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float
        return math.inf


def _framework(log: EventLog) -> str | None:
    event = log.first("framework")
    if event is None:
        return None
    device = event.metadata.get("device")
    return f"{event.value} ({device})" if device else str(event.value)


def _dataset(log: EventLog) -> dict:
    """Which data the run trained on: the workload's name for it and its sha256; data the run
    made itself says so ("synthetic <generator> sha256:...", synthetic_data).

    Logs from before the synthetic value named generated data by itself: read as before, so
    that their signed results still recompute to the same."""
    event = log.first("dataset")
    if event is None:
        return {}
    digest = event.metadata.get("sha256")
    sha = f"sha256:{digest}" if isinstance(digest, str) else None
    if event.value == SYNTHETIC_DATA:
        generator = event.metadata.get("generator")
        named = [SYNTHETIC_DATA, generator if isinstance(generator, str) else None, sha]
        return {"dataset": " ".join(filter(None, named)), "synthetic_data": True}
    return {"dataset": f"{event.value} {sha}"} if sha else {}


def _data_loader(log: EventLog) -> str | None:
    event = log.first("data_loader")
    return None if event is None or event.value is None else str(event.value)


def _loader(measured: list[metrics.Window], notes: list[str]) -> metrics.Loader | None:
    """The wait for data over the measured windows, a note when the run was input-bound."""
    try:
        loader = metrics.loader(measured)
    except metrics.MetricError as exc:
        notes.append(str(exc))
        return None
    if loader is not None and loader.note:
        notes.append(loader.note)
    return loader


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


def _telemetry(
    run_dir: Path, record: RunRecord, nnodes: int, measured: list[metrics.Window], notes: list[str]
) -> dict:
    """Power and memory over the measured windows, from the most specific scope recorded, over
    every node's devices; a multi-node run's `nodes` each node's own; each node power source
    on its own (`node_power`)."""
    out: dict = {}
    samples = sum(w.samples for w in measured)
    per_node: dict[int, dict] = {rank: {"node": rank} for rank in range(nnodes)}
    # One parse of each node's file for the three metrics (the collector recomputes every
    # submission).
    recorded = load_nodes(run_dir, ("power_w", "mem_used_bytes", "energy_j"), record.node_clock_ns)
    out["node_power"] = node_sources(recorded, measured, samples)
    chip = {m: [n for n in found if n[1] != NODE] for m, found in recorded.items()}
    for name, metric in (("power", "power_w"), ("memory", "mem_used_bytes")):
        nodes = chip[metric]
        if not nodes:
            notes.append(f"{name}: no sensor recorded {metric} for this run")
            continue
        if len(scopes := sorted({scope for _, scope, _ in nodes})) > 1:
            notes.append(f"{name}: the nodes recorded different scopes ({', '.join(scopes)})")
            continue
        devices = [series[d] for _, _, series in nodes for d in sorted(series)]
        try:
            out[name] = _figure(name, devices, measured, samples)
        except metrics.MetricError as exc:
            notes.append(str(exc))
            continue
        out[f"{name}_scope"] = scope = nodes[0][1]
        out["telemetry_hz"] = sample_rate_hz(devices[0])
        for rank, _, series in nodes if nnodes > 1 else ():
            with contextlib.suppress(metrics.MetricError):  # the total said why
                own = [series[d] for d in sorted(series)]
                per_node[rank] |= {name: _figure(name, own, measured, samples), "scope": scope}
    if nnodes > 1:
        out["nodes"] = [NodeFigures(**figures) for figures in per_node.values()]
    counters = chip["energy_j"]
    if counters:
        try:
            devices = [d for _, _, series in counters for d in series.values()]
            out["energy_counter_j"] = metrics.counter_energy_j(devices, measured)
        except metrics.MetricError as exc:
            notes.append(str(exc))
    return out


def _figure(
    name: str, devices: list[list[metrics.Sample]], measured: list[metrics.Window], samples: int
) -> metrics.Power | metrics.Memory:
    if name == "power":
        return metrics.power(devices, measured, samples)
    return metrics.memory(devices, measured)


def assess(run_set: Path) -> Result:
    """Recompute a run set's result from its files (the runs recorded so far)."""
    if not (run_set / PLAN_FILE).is_file():
        raise SchemaError(f"{run_set}: not a run directory (no {PLAN_FILE})")
    plan = read_model(run_set / PLAN_FILE, RunPlan)
    recorded = [p for p in plan.runs if (run_set / p.label / RUN_FILE).is_file()]
    if not recorded:
        raise SchemaError(f"{run_set}: no runs recorded yet")
    runs = _weights_from([assess_run(run_set / p.label, p, plan) for p in recorded])
    notes = [f"{p.label}: planned but not recorded" for p in plan.runs if p not in recorded]
    notes += [f"{r.label}: {n}" for r in runs if r.inference for n in _inference_notes(r)]
    complete = len(recorded) == len(plan.runs) and all(r.status != "incomplete" for r in runs)
    dims = _dimensions(plan, runs, notes)
    state = "complete" if complete else "incomplete"
    idle = idle_floor(run_set)
    return Result(plan=plan, runs=runs, dimensions=dims, state=state, notes=notes, idle=idle)


def _weights_from(runs: list[RunSummary]) -> list[RunSummary]:
    """Each infer run's weights tied to the run of the set that wrote them: the checkpoint
    its plan names, when the sha256 it loaded is the one that run logged."""
    written = {r.label: f"checkpoint {r.checkpoint}" for r in runs if r.checkpoint}
    tied = []
    for run in runs:
        source, inference = run.checkpoint_from, run.inference
        if inference and source and inference.weights == written.get(source):
            inference = inference.model_copy(update={"weights_from": source})
            run = run.model_copy(update={"inference": inference})
        tied.append(run)
    return tied


def _inference_notes(run: RunSummary) -> list[str]:
    """Why an infer run's figures are N/A, and weights that are not the checkpoint planned."""
    inference = run.inference
    assert inference is not None
    why = {"latency": inference.latency_na, "accuracy": inference.accuracy_na}
    notes = [f"{name}: {reason}" for name, reason in why.items() if reason]
    if run.checkpoint_from and inference.weights_from is None:
        notes.append(f"weights: {inference.weights}, not {run.checkpoint_from}'s checkpoint")
    return notes


def _median_speed(runs: list[RunSummary]) -> RunSummary | None:
    """The run of median speed (the lower middle one of an even count)."""
    timed = [r for r in runs if r.speed is not None]
    if not timed:
        return None
    median = statistics.median_low(r.speed.value for r in timed)
    return next(r for r in timed if r.speed.value == median)


def _speed_na(runs: list[RunSummary], none: str) -> str:
    """Why the runs at the reported scale give no speed: the first one's own reason."""
    if not runs:
        return none
    run = runs[0]
    why = run.speed_na if run.status == "success" else f"{run.status}, {run.reason}"
    return why if len(runs) == 1 else f"{run.label}: {why}"


def _dimensions(plan: RunPlan, runs: list[RunSummary], notes: list[str]) -> Dimensions:
    """The six training dimensions; an infer run's figures are its own (RunSummary.inference)."""
    if all(p.mode == "infer" for p in plan.runs):
        return Dimensions()
    runs = [r for r in runs if r.mode != "infer"]
    ok = [r for r in runs if r.status == "success"]
    if not ok:
        notes.append("every run failed: " + "; ".join(f"{r.label}: {r.reason}" for r in runs))
        return Dimensions()
    dims: dict = {}

    # Speed, power and memory all come from one run at the reported scale (one node, nproc
    # devices), the median-speed one, so that J/sample and memory describe the same run as
    # the speed printed beside them. Speed runs when the plan has them, else converge runs.
    mode = "speed" if any(p.mode == "speed" for p in plan.runs) else "converge"
    same_mode = [r for r in ok if r.mode == mode]

    def at(nproc: int, nnodes: int = 1) -> RunSummary | None:
        return _median_speed([r for r in same_mode if (r.nproc, r.nnodes) == (nproc, nnodes)])

    rep = at(plan.nproc)
    if rep:
        dims |= {name: getattr(rep, name) for name in Figures.model_fields}
        notes += [f"{rep.label}: {n}" for n in rep.notes if not n.startswith("speed")]
    else:
        reported = [r for r in runs if (r.mode, r.nproc, r.nnodes) == (mode, plan.nproc, 1)]
        dims["speed_na"] = _speed_na(reported, f"no {mode} run at {plan.nproc}x recorded")
        notes.append(f"speed: {dims['speed_na']}")

    planned = [p for p in plan.runs if p.mode == "converge"]
    converge = [r for r in runs if r.mode == "converge"]
    ended = [r for r in converge if r.status != "incomplete"]  # ran to their end
    if planned:
        values = [r.accuracy for r in converge if r.status == "success" and r.accuracy is not None]
        if values:
            q = plan.quality
            dims["accuracy"] = metrics.accuracy(statistics.median(values), q.target, q.direction)
        else:
            notes.append("accuracy: no successful converge run logged eval_accuracy")
        if len(ended) < len(planned):
            notes.append(
                f"stability: incomplete, {len(ended)} of {len(planned)} converge runs ran to "
                "their end (the budget cut the others, or they are not recorded)"
            )
        elif len(converge) >= 2:
            finals = [r.accuracy if r.status == "success" else None for r in converge]
            try:
                dims["stability"] = metrics.stability(finals, plan.tolerance)
            except metrics.MetricError as exc:
                notes.append(str(exc))
        else:
            notes.append("stability: needs at least 2 converge runs (DeepSpark uses 5)")
    else:
        notes.append("accuracy and stability: measured in converge mode only")

    if plan.nproc > 1 or plan.nnodes > 1:
        dims["linearity"] = _linearity(plan, rep, at(1), at(plan.nproc, plan.nnodes), notes)
    return Dimensions(**dims)


def _linearity(
    plan: RunPlan,
    node: RunSummary | None,
    one: RunSummary | None,
    nodes: RunSummary | None,
    notes: list[str],
) -> Linearity | None:
    """Card linearity from one device to one node, node linearity from one node to M."""
    card = node_linearity = None
    if plan.nproc > 1:
        if node and one:
            card = metrics.linearity(node.speed.value, plan.nproc, one.speed.value)
        else:
            notes.append(f"linearity: no speed at 1 and {plan.nproc} devices to compare")
    if plan.nnodes > 1:
        if node and nodes:
            node_linearity = metrics.linearity(nodes.speed.value, plan.nnodes, node.speed.value)
        else:
            notes.append(f"linearity: no speed at 1 and {plan.nnodes} nodes to compare")
    if card is None and node_linearity is None:
        return None
    return Linearity(
        card=card,
        devices=plan.nproc,
        speed_1=one.speed.value if one else None,
        node=node_linearity,
        nodes=plan.nnodes,
    )
