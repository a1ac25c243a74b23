"""The collector's web pages: server-rendered HTML, no JavaScript, nothing fetched from elsewhere.

`/` lists the models, `/models/{model}` is a leaderboard in the seed table's columns (best speed
first), `/compare?model=&a=&b=` sets two platforms side by side with ratios, `/results/{id}` is
one result with its plots. Pages read what the API reads (`store`); every cell is the
collector's recomputed figure formatted as the agent's own row (`report.seed_row`). Plots are
inline SVG made here; Jinja's autoescape escapes every value a template prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from deepspark_agent.report import seed_row
from deepspark_agent.results import TELEMETRY_FILE, Result, RunSummary
from deepspark_agent.telemetry import load_series
from deepspark_collector import db, store

# A submission's id as a path parameter: what SQLite's INTEGER holds (a larger one would be
# an OverflowError, a 500, instead of a client's 422). The API's route uses it too.
SubmissionId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]

router = APIRouter()
templates = Environment(
    loader=PackageLoader("deepspark_collector", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


# The leaderboard's columns: the seed table's, then where the figures come from.
COLUMNS = (
    "task", "model", "target", "config", "speed", "accuracy",
    "power (W)", "linearity", "memory (GB)", "stability", "platform", "vendor",
)  # fmt: skip
# Figures compared as a ratio a / b, with the direction that is better.
RATIOS = (
    ("speed", "samples/s", "higher"),
    ("accuracy", "", "higher"),
    ("power_w", "W", "lower"),
    ("linearity", "", "higher"),
    ("memory_gb", "GB", "lower"),
    ("stability", "", "higher"),
)


def _factory(request: Request):
    return db.sessions(request.app.state.engine)


def _render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context), status_code=status_code)


def _row(summary: dict[str, Any], result: Result) -> dict[str, Any]:
    """One leaderboard row: the seed table's cells, the platform, vendor and raw figures."""
    cells = seed_row(result)
    cells["platform"] = summary["platform"]
    cells["vendor"] = summary["vendor"]
    return {"id": summary["id"], "cells": cells, "summary": summary}


def _rows(request: Request, model: str) -> list[dict[str, Any]]:
    factory = _factory(request)
    rows = []
    for summary in store.list_results(factory, model=model):
        stored = store.get_result(factory, summary["id"])
        rows.append(_row(summary, Result.model_validate(stored["result"])))
    # Best speed first; rows without a speed last; oldest first among equals (a stable sort).
    return sorted(rows, key=lambda r: _speed_order(r["summary"]["speed"]))


def _speed_order(speed: float | None) -> tuple[bool, float]:
    return speed is None, -(speed or 0.0)


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    models: dict[str, dict[str, Any]] = {}
    for row in store.list_results(_factory(request)):
        entry = models.setdefault(
            row["model"], {"model": row["model"], "results": 0, "platforms": set(), "best": None}
        )
        entry["results"] += 1
        entry["platforms"].add(row["platform"])
        if row["speed"] is not None and (entry["best"] is None or row["speed"] > entry["best"]):
            entry["best"] = row["speed"]
    return _render("index.html", models=[models[name] for name in sorted(models)])


@router.get("/models/{model}", response_class=HTMLResponse)
def leaderboard(request: Request, model: str) -> HTMLResponse:
    rows = _rows(request, model)
    platforms = sorted({r["summary"]["platform"] for r in rows})
    return _render(
        "model.html",
        status_code=200 if rows else 404,
        model=model,
        columns=COLUMNS,
        rows=rows,
        platforms=platforms,
    )


@router.get("/compare", response_class=HTMLResponse)
def compare(
    request: Request, model: str = "", a: str | None = None, b: str | None = None
) -> HTMLResponse:
    best = {r["platform"]: r for r in store.compare(_factory(request), model)} if model else {}
    side = {name: best.get(name) for name in (a, b) if name}
    missing = [name for name, row in side.items() if row is None]
    ratios = []
    if a in best and b in best:
        for key, unit, better in RATIOS:
            va, vb = best[a][key], best[b][key]
            ratio = va / vb if va is not None and vb else None
            ratios.append(
                {"name": key, "unit": unit, "better": better, "a": va, "b": vb, "ratio": ratio}
            )
    return _render(
        "compare.html",
        status_code=404 if missing else 200,
        model=model,
        a=a,
        b=b,
        platforms=sorted(best),
        missing=missing,
        rows={name: best[name] for name in (a, b) if name in best},
        ratios=ratios,
    )


@router.get("/results/{submission_id}", response_class=HTMLResponse)
def result_page(request: Request, submission_id: SubmissionId) -> HTMLResponse:
    try:
        stored = store.get_result(_factory(request), submission_id)
    except store.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    result = Result.model_validate(stored["result"])
    speed = result.dimensions.speed
    runs = [*result.runs, *([result.baseline] if result.baseline else [])]
    windows = [(f"w{i + 1}", v) for i, v in enumerate(speed.per_window if speed else ())]
    power = [(r.label, r.power.total_w) for r in runs if r.power]
    memory = [(r.label, sum(r.memory.peak_gb)) for r in runs if r.memory]
    # Over time: the representative (median-speed) run's telemetry, from the kept artifacts.
    rep = next((r for r in result.runs if speed and r.speed == speed), None)
    kept = request.app.state.settings.artifacts_dir / stored["envelope_sha256"]
    power_t = _over_time(kept, rep, "power_w", 1.0)
    memory_t = _over_time(kept, rep, "mem_used_bytes", 1e9)
    return _render(
        "result.html",
        stored=stored,
        result=result,
        columns=COLUMNS,
        row=_row(stored, result),
        runs=runs,
        speed_plot=bar_chart(windows, "samples/s", "throughput per measured window", "windows"),
        power_plot=bar_chart(power, "W", "mean power per run (all devices)", "power"),
        memory_plot=bar_chart(memory, "GB", "peak memory per run (all devices)", "memory"),
        power_time=line_chart(power_t, "W", f"power over time ({rep and rep.label})", "power-t"),
        memory_time=line_chart(
            memory_t, "GB", f"memory over time ({rep and rep.label})", "memory-t"
        ),
    )


def artifact_files(run_set: Path) -> dict[str, Path]:
    """A stored run set's files by their relative names (empty if none were kept)."""
    if not run_set.is_dir():
        return {}
    return {p.relative_to(run_set).as_posix(): p for p in sorted(run_set.rglob("*")) if p.is_file()}


Point = tuple[float, float]


def _over_time(run_set: Path, run: RunSummary | None, metric: str, scale: float) -> list[Point]:
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


def _frame(title: str, unit: str, peak: float, css_class: str, width: int, height: int) -> list:
    """An SVG chart's opening, caption, x axis and y ticks (0 and peak)."""
    left, top, plot_h = 64, 24, height - 24 - 36
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot {escape(css_class)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="14" class="caption">{escape(title)}</text>',
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
