"""Baselines: per model and figure, a reference value and its spread over known-good evaluations.

A platform team builds one once on a stack it trusts (`deepspark-agent baseline create`) and
diagnoses every later evaluation against it (`diagnosis`). Figures are recomputed from each
run set's raw files by `assess`, never read from a stored result; the baseline names the
evaluations it comes from (directory, plan digests, system) so a diagnosis can say what it
is compared with.
"""

from __future__ import annotations

import hashlib
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from deepspark_core import nesting
from deepspark_core.assess import assess
from deepspark_core.errors import DeepSparkError
from deepspark_core.files import read_json
from deepspark_core.results import PLAN_FILE, QualityTarget, Result, RunSummary
from deepspark_core.system import Accelerator

BASELINE_SCHEMA = "deepspark.baseline/v1"
Direction = Literal["higher", "lower"]


class BaselineError(DeepSparkError):
    """A baseline that cannot be built or read."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Measured:
    """One figure of one result: its value, what better means, and the runs it comes from."""

    value: float
    unit: str
    direction: Direction
    runs: tuple[str, ...]
    scope: str | None = None  # power, energy and memory: what the telemetry covered


class Spread(_Strict):
    """A figure over the baseline's evaluations: the reference is their mean."""

    reference: float
    min: float
    max: float
    stdev: float | None  # sample standard deviation; None from a single evaluation
    evaluations: int  # how many measured it
    unit: str
    direction: Direction
    scope: str | None = None


class Source(_Strict):
    """An evaluation (or a lone run set) by its identity: what a baseline or diagnosis is."""

    name: str  # its directory's name
    host: str
    accelerators: list[str]  # each distinct model with its driver and SDK; empty: CPU only
    frameworks: list[str]  # as the workloads logged them
    plans: dict[str, str]  # per model key, the sha256 of its run set's plan.json


class ModelBaseline(_Strict):
    model: str  # the workload
    config: str
    framework: str | None
    precision: str
    batch_size: int
    nproc: int
    nnodes: int
    quality: QualityTarget
    tolerance: float  # the plan's accuracy tolerance (its stability band)
    implementations: list[str]  # the workload's digests seen, in order
    evaluations: list[str]  # the sources that hold this model
    figures: dict[str, Spread]


class Baseline(_Strict):
    schema_version: Literal["deepspark.baseline/v1"] = BASELINE_SCHEMA
    created_at: str
    sources: list[Source]
    models: dict[str, ModelBaseline]  # by model key (`model_key`)


# Plan fields that must agree for figures to be averaged, or compared: like for like.
LIKE_FOR_LIKE = ("config", "precision", "batch_size", "nproc", "nnodes")


def model_key(result: Result) -> str:
    """A model's name in baselines and findings: its workload and preset, as `up` names it."""
    return f"{result.plan.model}-{result.plan.config}"


@dataclass(frozen=True)
class Evaluated:
    """An evaluation's models, each recomputed from its run set's files."""

    name: str
    models: dict[str, tuple[Path, Result]]  # by model key, in suite order


def evaluate_run_sets(name: str, run_sets: list[Path]) -> Evaluated:
    """Assess each run set (never a stored result.json) under its model key."""
    models: dict[str, tuple[Path, Result]] = {}
    for run_set in run_sets:
        result = assess(run_set)
        key = model_key(result)
        if key in models:
            raise BaselineError(
                f"{name}: two run sets of {key} ({models[key][0].name}, {run_set.name})"
            )
        models[key] = (run_set, result)
    return Evaluated(name, models)


def representative(result: Result) -> RunSummary | None:
    """The run the result's speed, power and memory come from (assess's median-speed run)."""
    speed = result.dimensions.speed
    return next((r for r in result.runs if r.mode != "infer" and r.speed == speed), None)


def figures(result: Result) -> dict[str, Measured]:
    """The figures a baseline keeps, those the result has: training dimensions, then each
    infer run's throughput and p90 latency (`<label>.throughput`, `<label>.p90_latency`)."""
    dims, plan, out = result.dimensions, result.plan, {}
    rep = representative(result)
    at_scale = (rep.label,) if rep else ()
    converge = tuple(r.label for r in result.runs if r.mode == "converge")
    if rep and dims.speed:
        on = at_scale
        out["speed"] = Measured(dims.speed.value, "samples/s", "higher", on)
        if dims.end_to_end_speed is not None:
            out["end_to_end_speed"] = Measured(dims.end_to_end_speed, "samples/s", "higher", on)
        if dims.power:
            scope = dims.power_scope
            out["power"] = Measured(dims.power.total_w, "W", "lower", on, scope)
            if dims.power.j_per_sample is not None:
                out["energy"] = Measured(dims.power.j_per_sample, "J/sample", "lower", on, scope)
        if dims.memory:
            peak = max(dims.memory.peak_gb)
            out["memory"] = Measured(peak, "GB", "lower", on, dims.memory_scope)
    if dims.accuracy:
        q = plan.quality
        out["accuracy"] = Measured(dims.accuracy.value, q.metric, q.direction, converge)
    if dims.linearity and dims.linearity.card is not None:
        one = tuple(r.label for r in result.runs if r.mode != "infer" and r.nproc == 1)[:1]
        out["linearity"] = Measured(dims.linearity.card, "", "higher", (*one, *at_scale))
    if dims.linearity and dims.linearity.node is not None:
        out["node_linearity"] = Measured(dims.linearity.node, "", "higher", at_scale)
    if dims.stability and dims.stability.cv is not None:
        out["stability_cv"] = Measured(dims.stability.cv, "", "lower", converge)
    for run in result.infer_runs:
        if run.speed:
            out[f"{run.label}.throughput"] = Measured(
                run.speed.value, "samples/s", "higher", (run.label,)
            )
        if run.inference and run.inference.latency:
            p90 = run.inference.latency.p90_ms
            out[f"{run.label}.p90_latency"] = Measured(p90, "ms", "lower", (run.label,))
    return out


def _accelerator(accelerator: Accelerator) -> str:
    """e.g. "NVIDIA H100 80GB HBM3, driver 590.48.01, sdk 13.1": what a driver update changes."""
    a = accelerator
    named = [a.name or a.vendor, a.driver_version and f"driver {a.driver_version}"]
    return ", ".join(filter(None, [*named, a.sdk_version and f"sdk {a.sdk_version}"]))


def source(evaluated: Evaluated) -> Source:
    results = [result for _, result in evaluated.models.values()]
    accelerators = {_accelerator(a) for r in results for a in r.plan.system.accelerators}
    return Source(
        name=evaluated.name,
        host=results[0].plan.system.host.hostname if results else "",
        accelerators=sorted(accelerators),
        frameworks=sorted({run.framework for r in results for run in r.runs if run.framework}),
        plans={
            key: "sha256:" + hashlib.sha256((run_set / PLAN_FILE).read_bytes()).hexdigest()
            for key, (run_set, _) in evaluated.models.items()
        },
    )


def build(evaluations: list[Evaluated], created_at: str) -> Baseline:
    """Each model's figures over the evaluations that hold it: mean, min, max, stdev."""
    keys = list(dict.fromkeys(k for e in evaluations for k in e.models))
    models = {}
    for key in keys:
        held = [(e.name, e.models[key][1]) for e in evaluations if key in e.models]
        models[key] = _model(key, held)
    return Baseline(created_at=created_at, sources=[source(e) for e in evaluations], models=models)


def _model(key: str, held: list[tuple[str, Result]]) -> ModelBaseline:
    first = held[0][1].plan
    for name, result in held[1:]:
        for field in LIKE_FOR_LIKE:
            if getattr(result.plan, field) != getattr(first, field):
                raise BaselineError(
                    f"{key}: {field} {getattr(result.plan, field)} in {name}, "
                    f"{getattr(first, field)} in {held[0][0]}: a baseline averages like for like"
                )
    measured: dict[str, list[tuple[str, Measured]]] = {}
    for name, result in held:
        for figure, value in figures(result).items():
            measured.setdefault(figure, []).append((name, value))
    digests = [r.plan.implementation.digest for _, r in held if r.plan.implementation]
    return ModelBaseline(
        model=first.model,
        config=first.config,
        framework=first.framework,
        precision=first.precision,
        batch_size=first.batch_size,
        nproc=first.nproc,
        nnodes=first.nnodes,
        quality=first.quality,
        tolerance=first.tolerance,
        implementations=list(dict.fromkeys(digests)),
        evaluations=[name for name, _ in held],
        figures={figure: _spread(key, figure, seen) for figure, seen in measured.items()},
    )


def _spread(key: str, figure: str, seen: list[tuple[str, Measured]]) -> Spread:
    scopes = {m.scope for _, m in seen}
    if len(scopes) > 1:
        where = ", ".join(f"{m.scope} in {name}" for name, m in seen)
        raise BaselineError(f"{key}: {figure} measured at different scopes ({where})")
    values = [m.value for _, m in seen]
    first = seen[0][1]
    return Spread(
        reference=statistics.fmean(values),
        min=min(values),
        max=max(values),
        stdev=statistics.stdev(values) if len(values) > 1 else None,
        evaluations=len(values),
        unit=first.unit,
        direction=first.direction,
        scope=first.scope,
    )


def read_baseline(path: Path) -> Baseline:
    """A baseline file; another file (a result, a plan) is named by its own schema."""
    try:
        found = nesting.loads(path.read_text()).get("schema_version")
    except FileNotFoundError:
        raise BaselineError(f"{path}: no such file") from None
    except (ValueError, AttributeError):
        raise BaselineError(f"{path}: not a JSON object") from None
    if found != BASELINE_SCHEMA:
        raise BaselineError(f"{path}: schema_version {found!r}, expected {BASELINE_SCHEMA!r}")
    return read_json(path, Baseline, BaselineError)
