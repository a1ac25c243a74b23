"""Render a result as the seed table's row, its runs, and notes: Markdown and HTML pages."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from deepspark_core.plots import result_plots
from deepspark_core.results import Result

# The agent's templates: the standalone report, and the result body the collector shares.
TEMPLATES = PackageLoader("deepspark_core", "templates")

SEED_COLUMNS = (
    "task", "model", "target", "config", "speed", "accuracy",
    "power (W)", "linearity", "memory (GB)", "stability",
)  # fmt: skip
NA = "N/A"


def number(value: float | None, fmt: str = ".4g") -> str:
    """A figure as a table cell: N/A when missing."""
    return NA if value is None else format(value, fmt)


def _implementation(result: Result) -> str:
    """The config cell's mark of a vendor's implementation; none for the project's own."""
    implementation = result.plan.implementation
    if implementation is None or implementation.origin == "reference":
        return ""
    return ", vendor image" if implementation.kind == "image" else ", vendor"


def _input_bound(result: Result) -> str | None:
    """The note of the successful converge run of median wait share, when it was input-bound:
    its windows' speed measured the loader, not the accelerator."""
    converge = [r for r in result.runs if r.mode == "converge" and r.status == "success"]
    loaders = sorted((r.loader for r in converge if r.loader), key=lambda loader: loader.share)
    note = loaders[(len(loaders) - 1) // 2].note if loaders else None
    if note and any(p.mode == "speed" for p in result.plan.runs):
        return f"converge runs {note}"  # the speed beside it is the speed runs', not theirs
    return note


def seed_row(result: Result) -> dict[str, str]:
    """The DeepSpark table's columns, as text. An incomplete run set says so in its model
    cell, its stability (how many converge runs ran to their end) and its accuracy (from how
    many runs)."""
    plan, dims = result.plan, result.dimensions
    framework = next((r.framework for r in result.runs if r.framework), plan.runtime)
    incomplete = result.state == "incomplete"
    row = {
        "task": plan.task,
        "model": plan.model + (" (incomplete)" if incomplete else ""),
        "target": f"{plan.quality.metric} {plan.quality.target:g}",
        "config": f"{framework}, {plan.config}, bs:{plan.batch_size}, {plan.nproc}x"
        + (f"*{plan.nnodes}n" if plan.nnodes > 1 else "")
        + f", {plan.precision}"
        + _implementation(result)
        + (", synthetic data" if result.synthetic_data else ""),
        "speed": NA,
        "accuracy": NA,
        "power (W)": NA,
        "linearity": NA,
        "memory (GB)": NA,
        "stability": NA,
    }
    if not any(r.status == "success" for r in result.runs):
        # "failed" when a run failed on its own; "incomplete" when the budget cut them all
        status = "aborted" if any(r.status == "aborted" for r in result.runs) else "incomplete"
        word = "failed" if status == "aborted" else status
        reason = next((r.reason for r in result.runs if r.status == status), "no run succeeded")
        return row | dict.fromkeys(SEED_COLUMNS[4:], word) | {"speed": f"{word}: {reason}"}
    if dims.speed:
        row["speed"] = f"{dims.speed.value:.1f}/s ({dims.speed.windows} windows)"
    elif dims.speed_na:
        row["speed"] = f"{NA}: {dims.speed_na}"
    if input_bound := _input_bound(result):
        row["speed"] += f"; {input_bound}"
    converge = [r for r in result.runs if r.mode == "converge"]
    planned = sum(p.mode == "converge" for p in plan.runs)
    if dims.accuracy:
        mark = "reached" if dims.accuracy.converged else "missed"
        counted = sum(r.status == "success" and r.accuracy is not None for r in converge)
        of = f", {counted} of {planned} runs" if counted < planned else ""
        row["accuracy"] = f"{dims.accuracy.value:.4g} ({mark}{of})"
    if dims.power:
        # The hardware's energy counter where it has one, else the integral of sampled power.
        energy = dims.energy_counter_j or dims.power.energy_j
        row["power (W)"] = (
            f"{dims.power.mean_w[0]:.0f}*{dims.power.devices} ({dims.power_scope}; "
            f"{energy:.4g} J over the windows)"
        )
    if dims.linearity:
        lin = dims.linearity
        parts = [f"{lin.card:.2f}"] if lin.card is not None else []
        if lin.node is not None:
            parts.append(f"node {lin.node:.2f} ({lin.nodes} nodes)")
        row["linearity"] = ", ".join(parts)
    if dims.memory:
        row["memory (GB)"] = f"{dims.memory.mean_gb[0]:.2f}*{dims.memory.devices}"
        row["memory (GB)"] += f" ({dims.memory_scope}, {number(dims.telemetry_hz, '.0f')} Hz)"
    ended = sum(r.status != "incomplete" for r in converge)
    if dims.stability:
        s = dims.stability
        row["stability"] = f"{s.score:g} ({s.runs} runs, cv {number(s.cv, '.2%')})"
    elif ended < planned:
        row["stability"] = f"incomplete ({ended} of {planned} runs)"
    return row


def markdown_table(results: list[Result]) -> str:
    """The seed table in Markdown: the header, then one row per result."""
    lines = ["| " + " | ".join(SEED_COLUMNS) + " |", "|" + "---|" * len(SEED_COLUMNS)]
    for result in results:
        cells = (v.replace("|", "/") for v in seed_row(result).values())
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _templates() -> Environment:
    return Environment(loader=TEMPLATES, autoescape=select_autoescape(default=True))


def html_report(result: Result, run_set: Path) -> str:
    """A self-contained HTML page: the seed row, the plots (inline SVG), the runs and notes."""
    return _templates().get_template("report.html").render(**page_context(result, run_set))


def html_suite_report(title: str, models: list[tuple[Result, Path]]) -> str:
    """A self-contained HTML page of a whole evaluation: the seed table, then each model's
    plots, runs and notes. models: each result with the run set that holds its artifacts."""
    sections = [page_context(result, run_set) for result, run_set in models]
    rows = [section["row"] for section in sections]
    return (
        _templates()
        .get_template("suite.html")
        .render(title=title, columns=SEED_COLUMNS, rows=rows, sections=sections)
    )


def page_context(result: Result, run_set: Path) -> dict:
    """What result_body.html shows; run_set holds the raw artifacts the over-time plots read."""
    return {
        "result": result,
        "row": seed_row(result),
        "runs": result.runs,
        "plots": result_plots(result, run_set),
    }
