"""A result's plots as inline SVG: no JavaScript, nothing fetched, readable in any browser.

The agent's HTML report and the collector's result page show the same plots, made here from a
result and its run set's raw telemetry. Every label is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from markupsafe import Markup, escape

from deepspark_core.metrics import STABILITY_EPSILON
from deepspark_core.results import TELEMETRY_FILE, Result, RunSummary
from deepspark_core.series import load_series

Point = tuple[float, float]


def over_time(run_set: Path, run: RunSummary | None, metric: str, scale: float) -> list[Point]:
    """One run's telemetry of `metric` on its most specific scope, summed over devices tick
    by tick, as (seconds since the first reading, value / scale)."""
    found = load_series(run_set / run.label / TELEMETRY_FILE, metric) if run else None
    if found is None:
        return []
    devices = list(found[1].values())
    t0 = devices[0][0].t_ns
    ticks = min(len(series) for series in devices)
    return [
        ((devices[0][i].t_ns - t0) / 1e9, sum(d[i].value for d in devices) / scale)
        for i in range(ticks)
    ]


def _open(title: str, css_class: str, width: int, height: int) -> list[str]:
    """An SVG chart's opening tag, title and caption."""
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot {escape(css_class)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="64" y="14" class="caption">{escape(title)}</text>',
    ]


def _frame(title: str, unit: str, peak: float, css_class: str, width: int, height: int) -> list:
    """A chart's opening, x axis and y ticks (0 and peak)."""
    left, top, plot_h = 64, 24, height - 24 - 36
    return [
        *_open(title, css_class, width, height),
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 12}" y2="{top + plot_h}" '
        'class="axis"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" class="tick">'
        f"{escape(f'{peak:.4g}')}</text>",
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" class="tick">0</text>',
        f'<text x="4" y="{top + plot_h / 2:.1f}" class="tick">{escape(unit)}</text>',
    ]


def bar_chart(
    bars: Sequence[tuple[str, float]],
    unit: str,
    title: str,
    css_class: str,
    width: int = 560,
    height: int = 220,
) -> Markup:
    """An inline SVG bar chart, one `<rect class="bar">` per (label, value); empty if none."""
    if not bars:
        return Markup("")
    values = [value for _, value in bars]
    left, top = 64, 24
    plot_w, plot_h = width - left - 12, height - top - 36
    peak = max(values) or 1.0
    slot = plot_w / len(values)
    bar_w = max(slot * 0.7, 1.0)
    parts = _frame(title, unit, peak, css_class, width, height)
    for i, (label, value) in enumerate(bars):
        h = plot_h * max(value, 0.0) / peak
        x = left + i * slot + (slot - bar_w) / 2
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" '
            f'height="{h:.1f}"><title>{escape(label)}: {escape(f"{value:.6g}")} '
            f"{escape(unit)}</title></rect>"
        )
        parts.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 14}" text-anchor="middle" '
            f'class="tick">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(
    points: Sequence[Point], unit: str, title: str, css_class: str, width: int = 560,
    height: int = 220,
) -> Markup:  # fmt: skip
    """An inline SVG line (`<polyline class="line">`) of (seconds, value); empty if none."""
    return lines_chart([("", points)], unit, title, css_class, width=width, height=height)


def lines_chart(
    series: Sequence[tuple[str, Sequence[Point]]],
    unit: str,
    title: str,
    css_class: str,
    x_label: str = "{:.1f} s",
    width: int = 560,
    height: int = 220,
) -> Markup:
    """Lines overlaid on one scale, one per (label, points) with two points or more; empty if
    none. Labelled ones are told apart by class (`line s<i>`, i its place in series, so a
    series keeps its colour where another has no line) and a legend; x_label formats the
    largest x at the axis' end."""
    drawn = [(i, label, points) for i, (label, points) in enumerate(series) if len(points) >= 2]
    if not drawn:
        return Markup("")
    left, top = 64, 24
    plot_w, plot_h = width - left - 12, height - top - 36
    peak = max(v for _, _, points in drawn for _, v in points) or 1.0
    first = min(points[0][0] for _, _, points in drawn)
    last = max(points[-1][0] for _, _, points in drawn)
    span = last - first or 1.0
    parts = _frame(title, unit, peak, css_class, width, height)
    named = any(label for _, label, _ in drawn)
    for i, label, points in drawn:
        xy = " ".join(
            f"{left + plot_w * (t - first) / span:.1f},{top + plot_h * (1 - v / peak):.1f}"
            for t, v in points
        )
        if named:
            parts.append(
                f'<polyline class="line s{i}" fill="none" points="{xy}">'
                f"<title>{escape(label)}</title></polyline>"
            )
            parts.append(_legend(i, label, width))
        else:
            parts.append(f'<polyline class="line" fill="none" points="{xy}"/>')
    parts.append(
        f'<text x="{width - 12}" y="{top + plot_h + 14}" text-anchor="end" class="tick">'
        f"{escape(x_label.format(last))}</text></svg>"
    )
    return Markup("".join(parts))


def _legend(i: int, label: str, width: int) -> str:
    """Series i's name, in its colour, down the chart's right edge."""
    return (
        f'<text x="{width - 12}" y="{14 + 13 * i}" text-anchor="end" class="legend s{i}">'
        f"{escape(label)}</text>"
    )


class Spread(NamedTuple):
    """One set of converge runs: each run's final quality, their median and its tolerance."""

    label: str
    points: Sequence[tuple[str, float]]
    center: float
    tolerance: float


def spread_chart(
    points: Sequence[tuple[str, float]],
    center: float,
    tolerance: float,
    title: str,
    css_class: str = "spread",
    width: int = 560,
    height: int = 220,
) -> Markup:
    """Each run's final quality as a dot, against the median and its +/- tolerance band."""
    return spreads_chart([Spread("", points, center, tolerance)], title, css_class, width, height)


def spreads_chart(
    spreads: Sequence[Spread],
    title: str,
    css_class: str = "spread",
    width: int = 560,
    height: int = 220,
) -> Markup:
    """Several sets' spreads side by side on one scale: each its own part of the width, with
    its band, median and dots (labelled ones: classes `s<i>` as lines_chart's, a legend)."""
    kept = [(i, s) for i, s in enumerate(spreads) if s.points]
    if not kept:
        return Markup("")
    left, top = 64, 24
    plot_w, plot_h = width - left - 12, height - top - 36
    values = [v for _, s in kept for _, v in s.points]
    low = min(*values, *(s.center - s.tolerance for _, s in kept))
    high = max(*values, *(s.center + s.tolerance for _, s in kept))
    pad = (high - low) * 0.1 or abs(kept[0][1].center) * 0.01 or 1.0
    low, high = low - pad, high + pad

    def y(v: float) -> float:
        return top + plot_h * (high - v) / (high - low)

    slot = plot_w / len(values)
    named = any(s.label for _, s in kept)
    starts = [sum(len(s.points) for _, s in kept[:k]) for k in range(len(kept))]
    parts = _open(title, css_class, width, height)
    for (i, spread), start in zip(kept, starts, strict=True):
        series = f" s{i}" if named else ""
        x0, x1 = left + start * slot, left + (start + len(spread.points)) * slot
        upper, lower = y(spread.center + spread.tolerance), y(spread.center - spread.tolerance)
        parts.append(
            f'<rect class="band{series}" x="{x0:g}" y="{upper:.1f}" width="{x1 - x0:g}" '
            f'height="{lower - upper:.1f}"/>'
        )
        parts.append(
            f'<line class="median{series}" x1="{x0:g}" y1="{y(spread.center):.1f}" '
            f'x2="{x1:g}" y2="{y(spread.center):.1f}"/>'
        )
    for value in (high, *(s.center for _, s in kept), low):
        parts.append(
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" class="tick">'
            f"{escape(f'{value:.4g}')}</text>"
        )
    for (i, spread), start in zip(kept, starts, strict=True):
        if named:
            parts.append(_legend(i, spread.label, width))
        for j, (label, value) in enumerate(spread.points):
            x = left + (start + j + 0.5) * slot
            parts.append(_dot(spread, label, value, x, y(value)))
            parts.append(
                f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="middle" '
                f'class="tick">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def _dot(spread: Spread, label: str, value: float, x: float, y: float) -> str:
    """A run's final value: inside or outside its set's band, as metrics.stability counts."""
    inside = abs(value - spread.center) <= spread.tolerance + STABILITY_EPSILON
    name = f"{spread.label} {label}" if spread.label else label
    return (
        f'<circle class="dot {"inside" if inside else "outside"}" cx="{x:.1f}" cy="{y:.1f}" '
        f'r="5"><title>{escape(name)}: {escape(f"{value:.6g}")}</title></circle>'
    )


def representative(result: Result) -> RunSummary | None:
    """The run whose figures the result's speed, power and memory are: the median-speed one."""
    speed = result.dimensions.speed
    return next((r for r in result.runs if speed and r.speed == speed), None)


def _finals(result: Result) -> list[tuple[str, float]]:
    """Each converge run's final quality value, by label."""
    return [
        (r.label, r.accuracy)
        for r in result.runs
        if r.mode == "converge" and r.accuracy is not None
    ]


def result_plots(result: Result, run_set: Path) -> dict[str, Markup]:
    """All of a result's plots, by name; a plot with nothing to show is empty markup.

    run_set holds the raw artifacts (a run directory, or the collector's kept copy); without
    them the over-time plots are empty and the others still draw from the result.
    """
    speed, stability = result.dimensions.speed, result.dimensions.stability
    runs = result.runs
    windows = [(f"w{i + 1}", v) for i, v in enumerate(speed.per_window if speed else ())]
    power = [(r.label, r.power.total_w) for r in runs if r.power]
    memory = [(r.label, sum(r.memory.peak_gb)) for r in runs if r.memory]
    scaling = [(r.label, r.speed.value) for r in runs if r.speed]
    finals = _finals(result)
    # Over time: the representative (median-speed) run's telemetry.
    rep = representative(result)
    label = rep.label if rep else ""
    return {
        "speed": bar_chart(windows, "samples/s", "throughput per measured window", "windows"),
        "scaling": bar_chart(scaling, "samples/s", "throughput per run", "scaling")
        if len(scaling) > 1
        else Markup(""),
        "power": bar_chart(power, "W", "mean power per run (all devices)", "power"),
        "memory": bar_chart(memory, "GB", "peak memory per run (all devices)", "memory"),
        "power_time": line_chart(
            over_time(run_set, rep, "power_w", 1.0), "W", f"power over time ({label})", "power-t"
        ),
        "memory_time": line_chart(
            over_time(run_set, rep, "mem_used_bytes", 1e9),
            "GB",
            f"memory over time ({label})",
            "memory-t",
        ),
        "stability": spread_chart(
            finals,
            stability.baseline,
            stability.tolerance,
            f"final {result.plan.quality.metric} per run: median +/- {stability.tolerance:g}",
        )
        if stability and finals
        else Markup(""),
    }


def overlaid_plots(
    results: Sequence[tuple[str, Result | None, Path | None]],
) -> dict[str, Markup]:
    """Results of one model on shared charts, a series each (its label; a None result keeps
    a side's place, and so its colour, where it has none): throughput per measured window;
    power and memory over time of each representative run, where its run set's raw telemetry
    is at hand (None: figures alone); the stability spreads."""
    windows = [
        (label, [(i + 1.0, v) for i, v in enumerate(r.dimensions.speed.per_window)])
        if r and r.dimensions.speed
        else (label, [])
        for label, r, _ in results
    ]

    def over(metric: str, scale: float) -> list[tuple[str, list[Point]]]:
        return [
            (label, over_time(run_set, representative(r), metric, scale) if r and run_set else [])
            for label, r, run_set in results
        ]

    spreads = [
        Spread(label, _finals(r), s.baseline, s.tolerance)
        if r and (s := r.dimensions.stability)
        else Spread(label, [], 0.0, 0.0)
        for label, r, _ in results
    ]
    metric = next((r.plan.quality.metric for _, r, _ in results if r), "")
    return {
        "speed": lines_chart(
            windows, "samples/s", "throughput per measured window", "windows-c", "window {:.0f}"
        ),
        "power_time": lines_chart(
            over("power_w", 1.0), "W", "power over time (each representative run)", "power-c"
        ),
        "memory_time": lines_chart(
            over("mem_used_bytes", 1e9),
            "GB",
            "memory over time (each representative run)",
            "memory-c",
        ),
        "stability": spreads_chart(spreads, f"final {metric} per run: each median +/- tolerance"),
    }
