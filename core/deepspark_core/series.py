"""Reading recorded telemetry: one metric's series per device from a run's `telemetry.jsonl`
(the agent's recorder writes it: one JSON line per device per tick, with its scope), and the
rate it was achieved at. Assessment and the plots read it; recording stays in the agent."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from deepspark_core.metrics import Sample
from deepspark_core.results import NODE_TELEMETRY, TELEMETRY_FILE

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
                row = json.loads(line)
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


def load_nodes(
    run_dir: Path, metric: str, clock_ns: dict[int, int]
) -> list[tuple[int, str, dict[str, list[Sample]]]]:
    """One metric's series per node of a run (node 0's `telemetry.jsonl`, then each other
    node's `telemetry-node<R>.jsonl`): its rank, scope and devices, its times shifted by
    clock_ns[rank] onto node 0's clock. Nodes that recorded none of the metric are left out."""
    files = [(0, run_dir / TELEMETRY_FILE)]
    for path in run_dir.glob(NODE_TELEMETRY.format(rank="*")):
        rank = path.name.removeprefix("telemetry-node").removesuffix(".jsonl")
        if rank.isdigit() and int(rank) > 0:
            files.append((int(rank), path))
    nodes = []
    for rank, path in sorted(files):
        found = load_series(path, metric)
        if found is not None:
            shift = clock_ns.get(rank, 0)
            series = {d: [Sample(s.t_ns + shift, s.value) for s in v] for d, v in found[1].items()}
            nodes.append((rank, found[0], series))
    return nodes


def sample_rate_hz(series: list[Sample]) -> float | None:
    """The achieved sampling rate of one device's series."""
    if len(series) < 2 or series[-1].t_ns <= series[0].t_ns:
        return None
    return (len(series) - 1) / ((series[-1].t_ns - series[0].t_ns) / 1e9)
