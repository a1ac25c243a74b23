"""A result's plots as inline SVG: no JavaScript, nothing fetched, readable in any browser.

The agent's HTML report and the collector's result page show the same plots, made here from a
result and its run set's raw telemetry. Every label is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
    if len(points) < 2:
        return Markup("")
    left, top = 64, 24
    plot_w, plot_h = width - left - 12, height - top - 36
    peak = max(v for _, v in points) or 1.0
    span = points[-1][0] - points[0][0] or 1.0
    xy = " ".join(
        f"{left + plot_w * (t - points[0][0]) / span:.1f},{top + plot_h * (1 - v / peak):.1f}"
        for t, v in points
    )
    parts = _frame(title, unit, peak, css_class, width, height)
    parts.append(f'<polyline class="line" fill="none" points="{xy}"/>')
    parts.append(
        f'<text x="{width - 12}" y="{top + plot_h + 14}" text-anchor="end" class="tick">'
        f"{escape(f'{span:.1f} s')}</text></svg>"
    )
    return Markup("".join(parts))


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
    if not points:
        return Markup("")
    left, top = 64, 24
    plot_w, plot_h = width - left - 12, height - top - 36
    values = [v for _, v in points]
    low = min(*values, center - tolerance)
    high = max(*values, center + tolerance)
    pad = (high - low) * 0.1 or abs(center) * 0.01 or 1.0
    low, high = low - pad, high + pad

    def y(v: float) -> float:
        return top + plot_h * (high - v) / (high - low)

    slot = plot_w / len(points)
    parts = [
        *_open(title, css_class, width, height),
        f'<rect class="band" x="{left}" y="{y(center + tolerance):.1f}" width="{plot_w}" '
        f'height="{y(center - tolerance) - y(center + tolerance):.1f}"/>',
        f'<line class="median" x1="{left}" y1="{y(center):.1f}" x2="{left + plot_w}" '
        f'y2="{y(center):.1f}"/>',
    ]
    for value in (high, center, low):
        parts.append(
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" class="tick">'
            f"{escape(f'{value:.4g}')}</text>"
        )
    for i, (label, value) in enumerate(points):
        inside = abs(value - center) <= tolerance + STABILITY_EPSILON  # as metrics.stability
        x = left + (i + 0.5) * slot
        parts.append(
            f'<circle class="dot {"inside" if inside else "outside"}" cx="{x:.1f}" '
            f'cy="{y(value):.1f}" r="5"><title>{escape(label)}: {escape(f"{value:.6g}")}'
            "</title></circle>"
        )
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="middle" class="tick">'
            f"{escape(label)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


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
    finals = [
        (r.label, r.accuracy) for r in runs if r.mode == "converge" and r.accuracy is not None
    ]
    # Over time: the representative (median-speed) run's telemetry.
    rep = next((r for r in runs if speed and r.speed == speed), None)
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
