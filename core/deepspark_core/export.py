"""Results as flat rows of one stable schema, `deepspark.export/v1`, in CSV and JSON Lines.

A result gives a training row (the seed table's figures, when it has speed or converge runs)
and a row per infer run (the inference table's), every figure a plain number with its unit in
the column's name, an empty cell (null) with its reason beside it where a figure is N/A.
The agent's `report --csv/--jsonl` and the collector's `/api/v1/results.csv/.jsonl` write
the same rows. Every column, its type and unit: docs/exports.md.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain

from deepspark_core.errors import DeepSparkError
from deepspark_core.metrics import Accuracy
from deepspark_core.results import Figures, QualityTarget, Result, RunSummary

EXPORT_SCHEMA = "deepspark.export/v1"

# v1's columns in order, with their types; a cell of any of them may be empty (null). A
# column is never renamed, retyped or given another meaning within v1; one added goes last.
COLUMNS: dict[str, type] = {
    # what the row is, and whose
    "schema": str, "table": str, "submission_id": int, "vendor": str, "received_at": str,
    "created_at": str, "result_sha256": str, "agent_version": str,
    # what ran
    "task": str, "model": str, "implements": str, "implementation": str, "framework": str,
    "framework_version": str, "config": str, "precision": str, "batch_size": int,
    "devices": int, "nodes": int, "runtime": str, "scenario": str, "engine": str,
    "weights": str, "weights_from": str, "synthetic_data": bool, "status": str,
    "status_reason": str, "unranked": str,
    # the figures
    "speed_samples_per_s": float, "speed_windows": int, "speed_na": str,
    "end_to_end_samples_per_s": float,
    "latency_p50_ms": float, "latency_p90_ms": float, "latency_p99_ms": float,
    "latency_queries": int, "latency_na": str,
    "accuracy_metric": str, "accuracy_direction": str, "accuracy_target": float,
    "accuracy_value": float, "accuracy_converged": bool, "accuracy_runs": int,
    "accuracy_na": str,
    "linearity_card": float, "linearity_node": float, "linearity_na": str,
    "power_w": float, "power_devices": int, "power_scope": str, "power_na": str,
    "energy_j": float, "energy_j_per_inference": float, "energy_source": str,
    "memory_gb": float, "memory_peak_gb": float, "memory_devices": int, "memory_scope": str,
    "memory_na": str, "telemetry_hz": float,
    "stability_score": float, "stability_runs": int, "stability_failed": int,
    "stability_cv": float, "stability_na": str,
    # the system
    "accelerator": str, "driver": str, "sdk": str, "host": str, "os": str, "kernel": str,
    "cpu": str,
}  # fmt: skip

Row = dict[str, str | int | float | bool | None]
# A text cell a spreadsheet would read as a formula starts with one of these (OWASP's list);
# the CSV writes it behind a quote, and a text that starts with a quote behind another one.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


class ExportError(DeepSparkError):
    """A file that is not an export of this schema."""


@dataclass(frozen=True)
class Stored:
    """Where a collector keeps a result: its submission id, the vendor credited, when."""

    submission_id: int
    vendor: str
    received_at: str


def platform(result: Result) -> str:
    """The accelerator's name, or the CPU's on a host without one."""
    system = result.plan.system
    names = sorted({a.name or a.vendor for a in system.accelerators})
    return ", ".join(names) if names else f"cpu: {system.host.cpu_model}"


def rows(result: Result, stored: Stored | None = None) -> list[Row]:
    """The result's training row (when it has speed or converge runs), then one row per infer
    run, as the report's tables, each with every column in order; `stored`: the collector's
    identity of the result."""
    common = _common(result, stored)
    made = [_infer(result, run, common) for run in result.infer_runs]
    if any(p.mode != "infer" for p in result.plan.runs):
        made.insert(0, _training(result, common))
    return [{c: row.get(c) for c in COLUMNS} for row in made]


def _common(result: Result, stored: Stored | None) -> Row:
    plan, host = result.plan, result.plan.system.host
    accelerators = plan.system.accelerators
    return {
        "schema": EXPORT_SCHEMA,
        "submission_id": stored and stored.submission_id,
        "vendor": stored and stored.vendor,
        "received_at": stored and stored.received_at,
        "created_at": plan.created_at,
        "result_sha256": hashlib.sha256(result.model_dump_json().encode()).hexdigest(),
        "agent_version": plan.agent_version,
        "task": plan.task,
        "model": plan.model,
        "implements": plan.implements or plan.model,
        "implementation": plan.implementation.origin if plan.implementation else None,
        "framework": plan.framework,
        "framework_version": next((r.framework for r in result.runs if r.framework), None),
        "config": plan.config,
        "precision": plan.precision,
        "runtime": plan.runtime,
        "unranked": result.unranked,
        "accelerator": platform(result),
        "driver": _joined(a.driver_version for a in accelerators),
        "sdk": _joined(a.sdk_version for a in accelerators),
        "host": host.hostname,
        "os": host.os,
        "kernel": host.kernel,
        "cpu": host.cpu_model,
    }


def _joined(values: Iterable[str | None]) -> str | None:
    return ", ".join(sorted({v for v in values if v})) or None


def _training(result: Result, common: Row) -> Row:
    """The seed table's row: the six dimensions of the result's speed and converge runs."""
    plan, dims, notes = result.plan, result.dimensions, result.notes
    runs = [r for r in result.runs if r.mode != "infer"]
    recorded = {r.label for r in runs}
    missing = [p.label for p in plan.runs if p.mode != "infer" and p.label not in recorded]
    cut = [r for r in runs if r.status == "incomplete"]
    ok = any(r.status == "success" for r in runs)
    status, reason = "complete", None
    if not ok:
        status = "failed" if any(r.status == "aborted" for r in runs) else "incomplete"
        reason = next((r.reason for r in runs if r.status != "success"), None)
    elif cut or missing:
        status = "incomplete"
        reason = f"{cut[0].label}: {cut[0].reason}" if cut else f"{missing[0]}: not recorded"
    # Every figure is N/A for the same reason when no run succeeded.
    fallback = None if ok else f"{status}: {reason}"
    converge = [r for r in runs if r.mode == "converge"]
    lin, stab = dims.linearity, dims.stability
    single = plan.nproc == 1 and plan.nnodes == 1
    return {
        **common,
        "table": "training",
        "batch_size": plan.batch_size,
        "devices": plan.nproc,
        "nodes": plan.nnodes,
        "synthetic_data": result.synthetic_data,
        "status": status,
        "status_reason": reason,
        **_figures(dims, notes, fallback),
        **_accuracy(dims.accuracy, plan.quality, _reason(notes, "accuracy") or fallback),
        "accuracy_runs": sum(r.status == "success" and r.accuracy is not None for r in converge)
        if dims.accuracy
        else None,
        "linearity_card": lin and lin.card,
        "linearity_node": lin and lin.node,
        "linearity_na": None
        if lin
        else _reason(notes, "linearity")
        or fallback
        or ("one device on one node: nothing scaled" if single else None),
        "stability_score": stab and stab.score,
        "stability_runs": stab and stab.runs,
        "stability_failed": stab and stab.failed,
        "stability_cv": stab and stab.cv,
        "stability_na": None if stab else _reason(notes, "stability") or fallback,
    }


def _infer(result: Result, run: RunSummary, common: Row) -> Row:
    """The inference table's row of one infer run."""
    inference = run.inference
    status = {"success": "complete", "aborted": "failed"}.get(run.status, run.status)
    fallback = f"{status}: {run.reason}" if run.status != "success" else None
    energy = inference and (inference.counter_j_per_inference or inference.j_per_inference)
    accuracy = inference.accuracy if inference else None
    latency = inference.latency if inference else None
    return {
        **common,
        "table": "inference",
        "batch_size": inference.batch_size if inference else None,
        "devices": run.nproc,
        "nodes": run.nnodes,
        "scenario": run.scenario,
        "engine": run.engine,
        "weights": inference and inference.weights,
        "weights_from": inference and inference.weights_from,
        "synthetic_data": run.synthetic_data,
        "status": status,
        "status_reason": run.reason,
        **_figures(run, run.notes, fallback),
        "latency_p50_ms": latency and latency.p50_ms,
        "latency_p90_ms": latency and latency.p90_ms,
        "latency_p99_ms": latency and latency.p99_ms,
        "latency_queries": latency and latency.queries,
        "latency_na": None if latency else (inference and inference.latency_na) or fallback,
        **_accuracy(
            accuracy, result.plan.quality, (inference and inference.accuracy_na) or fallback
        ),
        "energy_j_per_inference": energy,
    }


def _figures(figures: Figures, notes: list[str], fallback: str | None) -> Row:
    """Speed, power, energy and memory of one run (a result's: its representative run's)."""
    speed, power, memory = figures.speed, figures.power, figures.memory
    counter = figures.energy_counter_j
    return {
        "speed_samples_per_s": speed and speed.value,
        "speed_windows": speed and speed.windows,
        "speed_na": None if speed else figures.speed_na or fallback,
        "end_to_end_samples_per_s": figures.end_to_end_speed,
        "power_w": power and power.total_w,
        "power_devices": power and power.devices,
        "power_scope": figures.power_scope,
        "power_na": None if power else _reason(notes, "power") or fallback,
        # The hardware's energy counter where it has one, else sampled power's integral.
        "energy_j": counter if counter is not None else power and power.energy_j,
        "energy_source": "energy counter"
        if counter is not None
        else ("power integral" if power else None),
        "memory_gb": memory and sum(memory.mean_gb),
        "memory_peak_gb": memory and max(memory.peak_gb),
        "memory_devices": memory and memory.devices,
        "memory_scope": figures.memory_scope,
        "memory_na": None if memory else _reason(notes, "memory") or fallback,
        "telemetry_hz": figures.telemetry_hz,
    }


def _accuracy(accuracy: Accuracy | None, quality: QualityTarget, na: str | None) -> Row:
    return {
        "accuracy_metric": quality.metric,
        "accuracy_direction": quality.direction,
        "accuracy_target": quality.target,
        "accuracy_value": accuracy and accuracy.value,
        "accuracy_converged": accuracy and accuracy.converged,
        "accuracy_na": None if accuracy else na,
    }


def _reason(notes: list[str], figure: str) -> str | None:
    """Why `figure` is missing, from the notes that say so: "figure: why", "a and figure:
    why", "label: figure: why" (a run's note in its result's), or "figure needs ..."."""
    for note in notes:
        for text in (note, note.partition(": ")[2]):
            head, colon, why = text.partition(": ")
            if colon and figure in head.split(" and "):
                return why
            if text.startswith(f"{figure} "):
                return text
    return None


# --- CSV and JSON Lines ------------------------------------------------------------------------


def _cell(value: str | int | float | bool | None) -> str:
    """A value as CSV text: empty for None, true/false, floats exactly (repr round-trips),
    a text that a spreadsheet would take for a formula behind a quote."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return QUOTE + value if value.startswith((*FORMULA_START, QUOTE)) else value


def csv_lines(rows: Iterable[Row]) -> Iterator[str]:
    """The header, then each row: RFC 4180 CSV (Python's csv), one string per row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    cells = ([_cell(row[c]) for c in COLUMNS] for row in rows)  # lazily: rows may stream
    for values in chain([list(COLUMNS)], cells):
        writer.writerow(values)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def jsonl_lines(rows: Iterable[Row]) -> Iterator[str]:
    """Each row as one JSON object per line, its keys the columns in order."""
    for row in rows:
        yield json.dumps(row) + "\n"


def _parsed(kind: type, text: str) -> str | int | float | bool | None:
    if text == "":
        return None
    if kind is bool:
        if text not in ("true", "false"):
            raise ValueError(f"{text!r} is not true or false")
        return text == "true"
    if kind is str:
        return text[1:] if text.startswith(QUOTE) else text
    return kind(text)


def read_csv(lines: Iterable[str]) -> list[Row]:
    """An export's CSV read back into typed rows (columns a later v1 added are left out)."""
    reader = csv.DictReader(lines)
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise ExportError(f"not a {EXPORT_SCHEMA} CSV: no column {missing[0]!r}")
    read = []
    for cells in reader:
        where = f"line {reader.line_num}"
        if cells["schema"] != EXPORT_SCHEMA:
            raise ExportError(f"{where}: schema {cells['schema']!r}, not {EXPORT_SCHEMA}")
        try:
            read.append({c: _parsed(kind, cells[c] or "") for c, kind in COLUMNS.items()})
        except ValueError as exc:
            raise ExportError(f"{where}: {exc}") from None
    return read
