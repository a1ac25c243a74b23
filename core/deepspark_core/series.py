"""Reading recorded telemetry: each metric's series per device from a run's `telemetry.jsonl`
(the agent's recorder writes it: one JSON line per device per tick, with its scope), a
multi-node run's other nodes' `telemetry-node<R>.jsonl` too, and the rate it was achieved at.
Assessment and the plots read it; recording stays in the agent."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from deepspark_core import nesting
from deepspark_core.metrics import Sample
from deepspark_core.results import NODE_TELEMETRY, TELEMETRY_FILE

SCOPES = ("accelerator", "container", "process-tree")  # most specific first
# The whole node's power sources (IPMI, Redfish, RAPL): never a run's devices, so never the
# series a device metric is read from, whatever else was recorded.
NODE_SCOPE = "node"

Series = tuple[str, dict[str, list[Sample]]]  # the scope read, and each device's readings


def read_series(path: Path, metrics: Iterable[str]) -> dict[str, Series | None]:
    """Each of `metrics`' readings per device, in time order, from the most specific scope
    that recorded it (accelerator before container before process tree); None for a metric
    none did. The file is parsed once whatever the number of metrics (the collector
    recomputes every submission). A line that cannot be read is skipped for the metrics it
    cannot give."""
    wanted = tuple(metrics)
    found: dict[str, dict[str, dict[str, list[Sample]]]] = {
        metric: defaultdict(lambda: defaultdict(list)) for metric in wanted
    }
    if path.exists():
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                _add_line(line, wanted, found)
    return {metric: _most_specific(found[metric]) for metric in wanted}


def _add_line(
    line: str, metrics: tuple[str, ...], found: dict[str, dict[str, dict[str, list[Sample]]]]
) -> None:
    try:
        row = nesting.loads(line)
        values = [(metric, row.get(metric)) for metric in metrics]
        present = [(metric, value) for metric, value in values if value is not None]
        if not present:
            return
        t_ns, scope, device = int(row["t_ns"]), str(row["scope"]), str(row["device"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return
    for metric, value in present:
        try:
            found[metric][scope][device].append(Sample(t_ns, float(value)))
        except (ValueError, TypeError):
            continue


def _most_specific(by_scope: dict[str, dict[str, list[Sample]]]) -> Series | None:
    by_scope = {scope: devices for scope, devices in by_scope.items() if scope != NODE_SCOPE}
    if not by_scope:
        return None
    scope = min(by_scope, key=lambda s: SCOPES.index(s) if s in SCOPES else len(SCOPES))
    return scope, {d: sorted(s, key=lambda x: x.t_ns) for d, s in by_scope[scope].items()}


def load_series(path: Path, metric: str) -> Series | None:
    """One metric's readings per device (`read_series` for one metric)."""
    return read_series(path, (metric,))[metric]


NodeSeries = tuple[int, str, dict[str, list[Sample]]]  # a node's rank, scope and devices


def load_nodes(
    run_dir: Path, metrics: Iterable[str], clock_ns: dict[int, int]
) -> dict[str, list[NodeSeries]]:
    """Each of `metrics`' series per node of a run (node 0's `telemetry.jsonl`, then each
    other node's `telemetry-node<R>.jsonl`): its rank, scope and devices, its times shifted by
    clock_ns[rank] onto node 0's clock. Each node's file is parsed once for all the metrics
    (`read_series`); a node that recorded none of a metric is left out of that metric's."""
    wanted = tuple(metrics)
    files = [(0, run_dir / TELEMETRY_FILE)]
    for path in run_dir.glob(NODE_TELEMETRY.format(rank="*")):
        rank = path.name.removeprefix("telemetry-node").removesuffix(".jsonl")
        if rank.isdigit() and int(rank) > 0:
            files.append((int(rank), path))
    nodes: dict[str, list[NodeSeries]] = {metric: [] for metric in wanted}
    for rank, path in sorted(files):
        shift = clock_ns.get(rank, 0)
        for metric, found in read_series(path, wanted).items():
            if found is not None:
                scope, devices = found
                if shift:
                    devices = {
                        d: [Sample(s.t_ns + shift, s.value) for s in v] for d, v in devices.items()
                    }
                nodes[metric].append((rank, scope, devices))
    return nodes


def sample_rate_hz(series: list[Sample]) -> float | None:
    """The achieved sampling rate of one device's series."""
    if len(series) < 2 or series[-1].t_ns <= series[0].t_ns:
        return None
    return (len(series) - 1) / ((series[-1].t_ns - series[0].t_ns) / 1e9)
