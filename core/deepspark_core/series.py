"""Reading recorded telemetry: one metric's series per device from a run's `telemetry.jsonl`
(the agent's recorder writes it: one JSON line per device per tick, with its scope), and the
rate it was achieved at. Assessment and the plots read it; recording stays in the agent."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from deepspark_core import nesting
from deepspark_core.metrics import Sample

SCOPES = ("accelerator", "container", "process-tree")  # most specific first


def load_series(path: Path, metric: str) -> tuple[str, dict[str, list[Sample]]] | None:
    """One metric's readings per device, in time order, from the most specific scope that
    recorded it (accelerator before container before process tree); None if none did.
    Unreadable lines are skipped."""
    by_scope: dict[str, dict[str, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    if not path.exists():
        return None
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                row = nesting.loads(line)
                value = row.get(metric)
                if value is not None:
                    sample = Sample(int(row["t_ns"]), float(value))
                    by_scope[str(row["scope"])][str(row["device"])].append(sample)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
    if not by_scope:
        return None
    scope = min(by_scope, key=lambda s: SCOPES.index(s) if s in SCOPES else len(SCOPES))
    return scope, {d: sorted(s, key=lambda x: x.t_ns) for d, s in by_scope[scope].items()}


def sample_rate_hz(series: list[Sample]) -> float | None:
    """The achieved sampling rate of one device's series."""
    if len(series) < 2 or series[-1].t_ns <= series[0].t_ns:
        return None
    return (len(series) - 1) / ((series[-1].t_ns - series[0].t_ns) / 1e9)
