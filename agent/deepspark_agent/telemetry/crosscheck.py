"""NVML beside nvidia-smi, scripts/gpu-check's telemetry step: both read at the same ticks,
then compared per GPU: power, memory used, and NVML's energy counter against the integral of
each source's power over the same interval.

Each tick reads the agent's own samplers: `NvmlSampler` (what `--telemetry nvml` records)
and a streaming `SmiSampler("nvidia-smi")` (`--telemetry smi:nvidia-smi`: `--query-gpu=...
--format=csv,noheader,nounits -lms 100`), whose latest record is at most one of its periods
older than the NVML reading. A source that cannot start is said and left out.

    python -m deepspark_agent.telemetry.crosscheck [--seconds S] [--hz HZ] [--markdown FILE]

samples until S seconds have passed or it gets SIGTERM or SIGINT, then prints the comparison
(Markdown) and writes it to FILE. Exit 1 when neither source gave a reading. With
`--results FILE` (what `up --json` printed) it samples nothing and prints each model's
measured figures instead, the energy counter beside the power integral over its windows,
energy per sample, node power (IPMI, Redfish, RAPL, where they answer) and the idle floor.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pynvml

from deepspark_agent.telemetry.nvml import NvmlSampler
from deepspark_agent.telemetry.recorder import DEFAULT_HZ, Sampler
from deepspark_agent.telemetry.smi import Readings, SmiSampler, TelemetryError
from deepspark_core.metrics import Sample, Window, counter_energy_j, power
from deepspark_core.report import seed_row
from deepspark_core.results import Result

MIB = 2**20
SOURCES = ("nvml", "nvidia-smi")


@dataclass(frozen=True)
class Tick:
    """One tick's readings from each source, on the monotonic clock."""

    t_ns: int
    readings: dict[str, Readings]  # source -> {device: {metric: value}}


@dataclass(frozen=True)
class Comparison:
    """One GPU's figures from both sources over the sampled interval."""

    device: str
    seconds: float
    ticks: dict[str, int]  # source -> ticks with a reading of this device
    mean: dict[str, dict[str, float]]  # source -> metric -> mean over its ticks
    power_gap_w: float | None  # mean |nvidia-smi power.draw - NVML's same-kind power|
    memory_gap_mib: float | None  # mean |nvidia-smi memory.used - NVML used|, per tick
    counter_j: float | None  # NVML's energy counter over the interval
    integral_j: dict[str, float]  # source -> trapezoid integral of its power_w


def series(ticks: Sequence[Tick], source: str, device: str, metric: str) -> list[Sample]:
    return [
        Sample(t.t_ns, v)
        for t in ticks
        if (v := t.readings.get(source, {}).get(device, {}).get(metric)) is not None
    ]


def _gap(ticks: Sequence[Tick], device: str, nvml_metric: str, smi_metric: str) -> float | None:
    """Mean absolute difference of the two sources at the ticks where both read the metric."""
    gaps = []
    for t in ticks:
        nvml = t.readings.get("nvml", {}).get(device, {}).get(nvml_metric)
        smi = t.readings.get("nvidia-smi", {}).get(device, {}).get(smi_metric)
        if nvml is not None and smi is not None:
            gaps.append(abs(smi - nvml))
    return statistics.fmean(gaps) if gaps else None


def compare(ticks: Sequence[Tick]) -> list[Comparison]:
    """Per device either source read, its figures over the whole sampled interval."""
    if len(ticks) < 2:
        return []
    interval = [Window(ticks[0].t_ns, ticks[-1].t_ns, 0)]
    devices = sorted({d for t in ticks for readings in t.readings.values() for d in readings})
    out = []
    for device in devices:
        means: dict[str, dict[str, float]] = {}
        integral: dict[str, float] = {}
        counts: dict[str, int] = {}
        for source in SOURCES:
            counts[source] = sum(device in t.readings.get(source, {}) for t in ticks)
            means[source] = {}
            for metric in ("power_w", "power_avg_w", "mem_used_bytes"):
                values = series(ticks, source, device, metric)
                if values:
                    means[source][metric] = statistics.fmean(s.value for s in values)
            watts = series(ticks, source, device, "power_w")
            if watts:
                integral[source] = power([watts], interval).energy_j
        energy = series(ticks, "nvml", device, "energy_j")
        # nvidia-smi's power.draw is a 1 s average on Ampere and newer: NVML's average is its
        # like, where the driver gives one; NVML's instant power otherwise.
        like = "power_avg_w" if "power_avg_w" in means["nvml"] else "power_w"
        memory_gap = _gap(ticks, device, "mem_used_bytes", "mem_used_bytes")
        out.append(
            Comparison(
                device=device,
                seconds=interval[0].seconds,
                ticks=counts,
                mean=means,
                power_gap_w=_gap(ticks, device, like, "power_w"),
                memory_gap_mib=None if memory_gap is None else memory_gap / MIB,
                counter_j=counter_energy_j([energy], interval) if len(energy) > 1 else None,
                integral_j=integral,
            )
        )
    return out


def _num(value: float | None, fmt: str = ".1f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{fmt}}{unit}"


def _ratio(integral: float | None, counter: float | None) -> str:
    if integral is None or not counter:
        return "n/a"
    return f"{integral / counter:.3f}"


def markdown(comparisons: Sequence[Comparison], notes: Sequence[str]) -> str:
    """The figures as a Markdown section: a table per device, then what could not be read."""
    lines = ["## Telemetry: NVML beside nvidia-smi", ""]
    for c in comparisons:
        nvml, smi = c.mean["nvml"], c.mean["nvidia-smi"]
        counter = c.counter_j
        lines += [
            f"### {c.device}, {c.seconds:.1f} s",
            "",
            "| figure | NVML | nvidia-smi | compared |",
            "|---|---|---|---|",
            f"| ticks with a reading | {c.ticks['nvml']} | {c.ticks['nvidia-smi']} | |",
            f"| power, mean (W) | {_num(nvml.get('power_w'))} instant, "
            f"{_num(nvml.get('power_avg_w'))} average | {_num(smi.get('power_w'))} "
            f"(power.draw) | mean gap {_num(c.power_gap_w, '.2f', ' W')} |",
            f"| memory used, mean (MiB) | {_num(_mib(nvml.get('mem_used_bytes')), '.0f')} "
            f"| {_num(_mib(smi.get('mem_used_bytes')), '.0f')} "
            f"| mean gap {_num(c.memory_gap_mib, '.1f', ' MiB')} |",
            f"| energy over the interval (J) | counter {_num(counter)}; power integral "
            f"{_num(c.integral_j.get('nvml'))} | power integral "
            f"{_num(c.integral_j.get('nvidia-smi'))} | integral / counter: NVML "
            f"{_ratio(c.integral_j.get('nvml'), counter)}, nvidia-smi "
            f"{_ratio(c.integral_j.get('nvidia-smi'), counter)} |",
            "",
        ]
    if not comparisons:
        lines += ["No device was read by either source.", ""]
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines).rstrip() + "\n"


def _mib(value: float | None) -> float | None:
    return None if value is None else value / MIB


# The seed row's energy cells, beside the figures above: per sample (chip and node sources,
# counter and integral), node power (IPMI where it answers) and the idle floor.
ENERGY_CELLS = ("energy (J/sample)", "node power (W)", "idle (W)")


def runs_markdown(results: Sequence[Result]) -> str:
    """Each model's measured figures (its result's dimensions): speed, device power and
    memory, the telemetry's rate, its energy over the measured windows by the hardware's
    counter and by the integral of sampled power, then the seed row's energy per sample,
    node power and idle floor."""
    lines = [
        "## The suite's measured runs",
        "",
        "| model | config | speed | power, mean (W) | memory, peak (GB) | telemetry "
        "| energy: counter, power integral (J) | integral / counter | "
        + " | ".join(ENERGY_CELLS)
        + " |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        plan, dims, row = result.plan, result.dimensions, seed_row(result)
        speed = f"{dims.speed.value:.1f}/s" if dims.speed else f"n/a ({dims.speed_na or 'none'})"
        watts = f"{dims.power.total_w:.1f}" if dims.power else "n/a"
        peak = f"{max(dims.memory.peak_gb):.2f}" if dims.memory else "n/a"
        integral = dims.power.energy_j if dims.power else None
        scope = f"power {dims.power_scope or 'none'}, memory {dims.memory_scope or 'none'}"
        scope += f", {_num(dims.telemetry_hz, '.1f', ' Hz')}"
        lines.append(
            f"| {plan.model} | {plan.config}, {plan.precision}, bs {plan.batch_size} | {speed} "
            f"| {watts} | {peak} | {scope} | {_num(dims.energy_counter_j)}, {_num(integral)} "
            f"| {_ratio(integral, dims.energy_counter_j)} | "
            + " | ".join(row[cell] for cell in ENERGY_CELLS)
            + " |"
        )
    lines += ["", *(f"- {r.plan.model}: {note}" for r in results for note in r.notes)]
    return "\n".join(lines).rstrip() + "\n"


def open_sources(smi_binary: str | None = None) -> tuple[dict[str, Sampler], list[str]]:
    """The samplers that start on this host, and a line for each that does not."""
    sources: dict[str, Sampler] = {}
    notes: list[str] = []
    try:
        sources["nvml"] = NvmlSampler()
    except pynvml.NVMLError as exc:
        notes.append(f"NVML does not start: {exc}")
    try:
        sources["nvidia-smi"] = SmiSampler("nvidia-smi", binary=smi_binary)
    except TelemetryError as exc:
        notes.append(str(exc))
    return sources, notes


def sample(
    sources: dict[str, Sampler], seconds: float, hz: float, stop: threading.Event
) -> list[Tick]:
    """Ticks at hz until seconds have passed or stop is set; the sources are closed after."""
    ticks: list[Tick] = []
    period_ns = int(1e9 / hz)
    start = next_ns = time.monotonic_ns()
    try:
        while not stop.is_set() and next_ns - start <= seconds * 1e9:
            t_ns = time.monotonic_ns()
            ticks.append(Tick(t_ns, {name: s.read() for name, s in sources.items()}))
            next_ns += period_ns
            stop.wait(max(0.0, (next_ns - time.monotonic_ns()) / 1e9))
    finally:
        for sampler in sources.values():
            sampler.close()
    return ticks


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deepspark_agent.telemetry.crosscheck", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="longest sampling time")
    parser.add_argument("--hz", type=float, default=DEFAULT_HZ, help="ticks per second")
    parser.add_argument("--markdown", type=Path, help="also write the comparison here")
    parser.add_argument("--smi-binary", help="the nvidia-smi to run (default: PATH's)")
    parser.add_argument("--results", type=Path, help="`up --json` output: its runs' figures")
    args = parser.parse_args(argv)
    if args.results:
        return _print_runs(args.results, args.markdown)
    if args.seconds <= 0 or not 0.1 <= args.hz <= 1000:
        parser.error("--seconds must be positive and --hz within 0.1..1000")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    sources, notes = open_sources(args.smi_binary)
    ticks = sample(sources, args.seconds, args.hz, stop) if sources else []
    notes += [f"{name}: {s.error}" for name, s in sources.items() if getattr(s, "error", None)]
    text = markdown(compare(ticks), notes)
    print(text, end="")
    if args.markdown:
        args.markdown.write_text(text)
    if not any(t.readings.get(source) for t in ticks for source in SOURCES):
        print("crosscheck: error: neither NVML nor nvidia-smi gave a reading", file=sys.stderr)
        return 1
    return 0


def _print_runs(path: Path, markdown_file: Path | None) -> int:
    try:
        results = [Result.model_validate(r) for r in json.loads(path.read_text())]
    except (OSError, ValueError) as exc:
        print(f"crosscheck: error: {path}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    text = runs_markdown(results)
    print(text, end="")
    if markdown_file:
        markdown_file.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
