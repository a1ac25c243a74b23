"""A result's inference figures, one set per scenario: those of its best infer run in that
scenario, which the leaderboard ranks it by (`board`) and the API lists (`db.ScenarioFigures`).

The best offline run is the fastest (throughput, samples/s); the best latency run has the
lowest p90 latency, as MLPerf Inference's single-stream scenario ranks by its 90th percentile.
A result that ran a scenario on several engines (eager, compiled) is in the scenario once,
with its best engine's figures and that engine named: an engine is a software choice, as a
framework's version is.
"""

from __future__ import annotations

from typing import Any

from deepspark_core.results import Result, RunSummary

# Each scenario's ranked figure: (the column, higher or lower is better).
RANKED_BY = {"offline": ("throughput", "higher"), "latency": ("latency_p90_ms", "lower")}


def score(run: RunSummary) -> float | None:
    """The run's standing in its scenario, higher is better; None: it has no such figure (it
    failed, or its latencies could not be read)."""
    column, direction = RANKED_BY[str(run.scenario)]
    value = figures(run)[column] if run.status == "success" else None
    return None if value is None else value * (1 if direction == "higher" else -1)


def best_runs(result: Result) -> dict[str, RunSummary]:
    """Each scenario the result ran with its best recorded infer run (the first of equals);
    a scenario whose runs all failed, with its first."""
    best: dict[str, RunSummary] = {}
    for run in result.infer_runs:
        held = best.get(str(run.scenario))
        if held is None or _better(score(run), score(held)):
            best[str(run.scenario)] = run
    return best


def _better(new: float | None, old: float | None) -> bool:
    return new is not None and (old is None or new > old)


def figures(run: RunSummary) -> dict[str, Any]:
    """An infer run's figures as the collector stores them: throughput (samples/s), latency
    percentiles (ms), accuracy, energy per inference (the energy counter's where the hardware
    has one, else sampled power's integral, as the report's row), power and memory summed over
    its devices; None where the run has no such figure."""
    inference = run.inference
    latency = inference.latency if inference else None
    energy = None
    if inference:
        energy = inference.counter_j_per_inference or inference.j_per_inference
    return {
        "scenario": run.scenario,
        "engine": run.engine,
        "status": run.status,
        "throughput": run.speed.value if run.speed else None,
        "latency_p50_ms": latency.p50_ms if latency else None,
        "latency_p90_ms": latency.p90_ms if latency else None,
        "latency_p99_ms": latency.p99_ms if latency else None,
        "accuracy": inference.accuracy.value if inference and inference.accuracy else None,
        "j_per_inference": energy,
        "power_w": sum(run.power.mean_w) if run.power else None,
        "memory_gb": sum(run.memory.mean_gb) if run.memory else None,
    }


def of(result: Result) -> list[dict[str, Any]]:
    """The result's figures in each scenario it ran: its best run's."""
    return [figures(run) for run in best_runs(result).values()]
