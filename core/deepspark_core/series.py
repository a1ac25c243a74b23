"""Reading recorded telemetry: each metric's series per device from a run's `telemetry.jsonl`
(the agent's recorder writes it: one JSON line per device per tick, with its scope), a
multi-node run's other nodes' `telemetry-node<R>.jsonl` too, and the rate it was achieved at.
Node power sources (scope "node": IPMI, Redfish, RAPL domains) are read beside the chip's
scopes as series of their own. Assessment and the plots read it; recording stays in the
agent."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from deepspark_core import nesting
from deepspark_core.metrics import Sample
from deepspark_core.results import NODE_TELEMETRY, TELEMETRY_FILE

SCOPES = ("accelerator", "container", "process-tree")  # most specific first
# A node power source's lines: each source (device "ipmi", "rapl:package-0"...) its own
# series beside the chip's, never a scope competing with them.
NODE = "node"

Series = tuple[str, dict[str, list[Sample]]]  # the scope read, and each device's readings


@dataclass(frozen=True)
class Telemetry:
    """One file's series: per metric, the chip's (most specific scope) and each node source's."""

    chip: dict[str, Series | None]
    node: dict[str, dict[str, list[Sample]]]  # metric -> source -> readings (may be empty)


def read_telemetry(path: Path, metrics: Iterable[str]) -> Telemetry:
    """Each of `metrics`' readings per device, in time order: the chip's from the most
    specific scope that recorded it (accelerator before container before process tree;
    None for a metric none did), and each node source's. The file is parsed once whatever
    the number of metrics (the collector recomputes every submission). A line that cannot be
    read is skipped for the metrics it cannot give."""
    wanted = tuple(metrics)
    found: dict[str, dict[str, dict[str, list[Sample]]]] = {
        metric: defaultdict(lambda: defaultdict(list)) for metric in wanted
    }
    if path.exists():
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                _add_line(line, wanted, found)
    return Telemetry(
        chip={metric: _most_specific(found[metric]) for metric in wanted},
        node={metric: _sorted(found[metric].pop(NODE, {})) for metric in wanted},
    )


def read_series(path: Path, metrics: Iterable[str]) -> dict[str, Series | None]:
    """The chip's series of each metric (`read_telemetry`), node sources left out."""
    return read_telemetry(path, metrics).chip


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


def _sorted(devices: dict[str, list[Sample]]) -> dict[str, list[Sample]]:
    return {d: sorted(s, key=lambda x: x.t_ns) for d, s in devices.items()}


def _most_specific(by_scope: dict[str, dict[str, list[Sample]]]) -> Series | None:
    chip = {scope: devices for scope, devices in by_scope.items() if scope != NODE}
    if not chip:
        return None
    scope = min(chip, key=lambda s: SCOPES.index(s) if s in SCOPES else len(SCOPES))
    return scope, _sorted(chip[scope])


def load_series(path: Path, metric: str) -> Series | None:
    """One metric's readings per device (`read_series` for one metric)."""
    return read_series(path, (metric,))[metric]


NodeSeries = tuple[int, str, dict[str, list[Sample]]]  # a node's rank, scope and devices


def load_nodes(
    run_dir: Path, metrics: Iterable[str], clock_ns: dict[int, int]
) -> dict[str, list[NodeSeries]]:
    """Each of `metrics`' series per node of a run (node 0's `telemetry.jsonl`, then each
    other node's `telemetry-node<R>.jsonl`): its rank, scope and devices, its times shifted by
    clock_ns[rank] onto node 0's clock; a node's power sources follow as (rank, NODE,
    sources). Each node's file is parsed once for all the metrics (`read_telemetry`); a node
    that recorded none of a metric is left out of that metric's."""
    wanted = tuple(metrics)
    files = [(0, run_dir / TELEMETRY_FILE)]
    for path in run_dir.glob(NODE_TELEMETRY.format(rank="*")):
        rank = path.name.removeprefix("telemetry-node").removesuffix(".jsonl")
        if rank.isdigit() and int(rank) > 0:
            files.append((int(rank), path))
    nodes: dict[str, list[NodeSeries]] = {metric: [] for metric in wanted}
    for rank, path in sorted(files):
        shift = clock_ns.get(rank, 0)
        recorded = read_telemetry(path, wanted)
        for metric in wanted:
            found = [recorded.chip[metric], (NODE, recorded.node[metric])]
            for scope, devices in (f for f in found if f and f[1]):
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
