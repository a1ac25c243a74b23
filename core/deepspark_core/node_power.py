"""Node power: each node power source's figures over a run's measured windows (IPMI, Redfish,
RAPL domains: telemetry lines of scope "node"), and the idle floor, every power source read
with nothing running before the first run (`idle.jsonl`)."""

from __future__ import annotations

from pathlib import Path

from deepspark_core import metrics
from deepspark_core.metrics import Sample, Window
from deepspark_core.results import IDLE_FILE, IdleFloor, NodeSource
from deepspark_core.series import NODE, NodeSeries, read_telemetry, sample_rate_hz

# What a node source gives: its power readings (W), its energy counter (J, unwrapped).
Readings = tuple[list[Sample], list[Sample]]


def _by_source(watts: dict[str, list[Sample]], joules: dict[str, list[Sample]]) -> dict:
    return {s: (watts.get(s, []), joules.get(s, [])) for s in sorted({*watts, *joules})}


def node_sources(
    recorded: dict[str, list[NodeSeries]], measured: list[Window], samples: int
) -> list[NodeSource] | None:
    """Each node source of a run (`series.load_nodes`' node entries; another node's named
    `<source>@node<R>`) over the measured windows, at its own achieved rate; None when the
    run recorded none. A source is never added to another: IPMI covers what RAPL does."""

    def named(metric: str) -> dict[str, list[Sample]]:
        return {
            device if rank == 0 else f"{device}@node{rank}": readings
            for rank, scope, devices in recorded.get(metric, [])
            if scope == NODE
            for device, readings in devices.items()
        }

    sources: dict[str, Readings] = _by_source(named("power_w"), named("energy_j"))
    if not sources:
        return None
    out = []
    for source, (watts, counter) in sources.items():
        figures: dict = {"source": source, "hz": sample_rate_hz(watts or counter)}
        try:
            figures["power"] = metrics.source_power(watts, counter, measured, samples or None)
        except metrics.MetricError as exc:
            figures["na"] = str(exc)
        out.append(NodeSource(**figures))
    return out


def idle_floor(run_set: Path) -> IdleFloor | None:
    """Mean power of every source over the idle recording; None when the run set has none
    (the row then says the idle floor was not measured)."""
    path = run_set / IDLE_FILE
    if not path.is_file():
        return None
    recorded = read_telemetry(path, ("power_w", "energy_j"))
    chip = recorded.chip["power_w"]
    sources: dict[str, Readings] = _by_source(recorded.node["power_w"], recorded.node["energy_j"])
    series = [*(chip[1].values() if chip else []), *(s for pair in sources.values() for s in pair)]
    times = [s.t_ns for readings in series for s in readings]
    if len(times) < 2 or max(times) == min(times):
        return IdleFloor(na="no node power source, nor an accelerator's, answered at idle")
    window = [Window(min(times), max(times), 0)]
    floor: dict = {"seconds": window[0].seconds}
    if chip:
        floor |= {"chip_scope": chip[0], "chip_w": _chip_means(chip[1], window)}
    node_w = {}
    for source, (watts, counter) in sources.items():
        try:
            node_w[source] = metrics.source_power(watts, counter, window).mean_w
        except metrics.MetricError:  # a source that answered too little: left out
            continue
    return IdleFloor(**floor, node_w=node_w)


def _chip_means(devices: dict[str, list[Sample]], window: list[Window]) -> tuple[float, ...]:
    return metrics.power([devices[d] for d in sorted(devices)], window).mean_w
