"""Render a result as the seed table's row, its runs, and notes: Markdown and HTML pages."""

from __future__ import annotations

import re
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from deepspark_core.metrics import ENERGY_DISAGREEMENT, disagreement, slow_convergence
from deepspark_core.plots import result_plots
from deepspark_core.results import Figures, IdleFloor, NodeSource, Result, RunSummary

# The agent's templates: the standalone report, and the result body the collector shares.
TEMPLATES = PackageLoader("deepspark_core", "templates")

SEED_COLUMNS = (
    "task", "model", "target", "config", "speed", "accuracy",
    "power (W)", "energy (J/sample)", "node power (W)", "idle (W)",
    "linearity", "memory (GB)", "stability",
)  # fmt: skip
INFER_COLUMNS = (
    "task", "model", "target", "config", "throughput", "latency (ms)", "accuracy",
    "power (W)", "energy (J/inference)", "node power (W)", "idle (W)", "memory (GB)",
)  # fmt: skip
NA = "N/A"
NO_NODE_SOURCE = f"{NA}: no node power source"


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
        **_head(result, incomplete),
        "config": f"{framework}, {_config(result)}, bs:{plan.batch_size}, {plan.nproc}x"
        + (f"*{plan.nnodes}n" if plan.nnodes > 1 else "")
        + f", {plan.precision}"
        + _implementation(result)
        + (", synthetic data" if result.synthetic_data else ""),
        "speed": NA,
        "accuracy": NA,
        "power (W)": NA,
        "energy (J/sample)": NA,
        "node power (W)": NA,
        "idle (W)": NA,
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
    if slow := _slow_convergence(result):
        row["accuracy"] += f"; {slow}"
    if dims.power:
        # The hardware's energy counter where it has one, else the integral of sampled power.
        energy = dims.energy_counter_j or dims.power.energy_j
        row["power (W)"] = _power(dims, f"; {energy:.4g} J over the windows")
    row |= _energy_columns(dims, result.idle, "energy (J/sample)")
    if dims.linearity:
        lin = dims.linearity
        parts = [f"{lin.card:.2f}"] if lin.card is not None else []
        if lin.node is not None:
            parts.append(f"node {lin.node:.2f} ({lin.nodes} nodes)")
        row["linearity"] = ", ".join(parts)
    if dims.memory:
        row["memory (GB)"] = _memory(dims)
    ended = sum(r.status != "incomplete" for r in converge)
    if dims.stability:
        s = dims.stability
        row["stability"] = f"{s.score:g} ({s.runs} runs, cv {number(s.cv, '.2%')})"
    elif ended < planned:
        row["stability"] = f"incomplete ({ended} of {planned} runs)"
    return row


def _head(result: Result, incomplete: bool) -> dict[str, str]:
    plan, quality = result.plan, result.plan.quality
    return {
        "task": plan.task,
        "model": plan.model + (" (incomplete)" if incomplete else ""),
        "target": f"{quality.metric} {quality.target:g}"
        + ("" if quality.validated else " (unvalidated)"),
    }


def _config(result: Result) -> str:
    """The preset, with its shortcuts against the reference model when it names them and the
    weights its training runs started from when they logged them (converge runs first: their
    accuracy depends on it)."""
    plan = result.plan
    trained = [r for r in result.runs if r.mode == "converge"] or result.runs
    starts = dict.fromkeys(_started(r.start_weights) for r in trained if r.start_weights)
    notes = [plan.variant, *starts] if plan.variant else list(starts)
    return f"{plan.config} ({', '.join(notes)})" if notes else plan.config


def _started(weights: str) -> str:
    """ "from scratch", or "from <what> sha256:<12 hex digits>" (result.json has all 64)."""
    if weights == "random":
        return "from scratch"
    return "from " + re.sub(r"(sha256:[0-9a-f]{12})[0-9a-f]+", r"\1", weights)


def _slow_convergence(result: Result) -> str | None:
    """The converge runs that took far longer to reach the target than the preset's reference
    sweep (metrics.slow_convergence), as one phrase; None when none did."""
    reference = result.plan.quality.reference_epochs
    if not reference:
        return None
    slow = [
        r
        for r in result.runs
        if r.epochs_to_target and slow_convergence(r.epochs_to_target, reference)
    ]
    if not slow:
        return None
    low, high = min(reference), max(reference)
    epochs = ", ".join(str(r.epochs_to_target) for r in slow)
    labels = ", ".join(r.label for r in slow)
    span = f"{low}" if low == high else f"{low}-{high}"
    return f"slow convergence: {epochs} epochs to target ({labels}), reference {span}"


def _power(figures: Figures, energy: str = "") -> str:
    assert figures.power is not None
    power = figures.power
    return f"{power.mean_w[0]:.0f}*{power.devices} ({figures.power_scope}{energy})"


def _memory(figures: Figures) -> str:
    assert figures.memory is not None
    memory, hz = figures.memory, number(figures.telemetry_hz, ".0f")
    return f"{memory.mean_gb[0]:.2f}*{memory.devices} ({figures.memory_scope}, {hz} Hz)"


def _joules(counter: float | None, integral: float | None) -> str | None:
    """Energy by the hardware's counter and by the power integral, each where it exists,
    and their disagreement past ENERGY_DISAGREEMENT."""
    parts = [f"{counter:.4g} (energy counter)"] if counter is not None else []
    parts += [f"{integral:.4g} (power integral)"] if integral is not None else []
    gap = disagreement(counter, integral)
    if gap is not None and gap > ENERGY_DISAGREEMENT:
        parts.append(f"differing by {gap:.0%} (over {ENERGY_DISAGREEMENT:.0%})")
    return ", ".join(parts) or None


def _energy_columns(figures: Figures, idle: IdleFloor | None, column: str) -> dict[str, str]:
    """Energy per sample (the chip's, each node source's), node power and the idle floor:
    the columns the seed row and an inference row share."""
    chip_integral = figures.power.j_per_sample if figures.power else None
    chip = _joules(figures.counter_j_per_sample, chip_integral)
    energy = [f"chip {chip}"] if chip else []
    for source in figures.node_power or []:
        if source.power and (joules := _source_joules(source)):
            energy.append(f"{source.source} {joules}")
    return {
        column: "; ".join(energy) or NA,
        "node power (W)": "; ".join(map(_source, figures.node_power or [])) or NO_NODE_SOURCE,
        "idle (W)": _idle(figures, idle),
    }


def _source_joules(source: NodeSource) -> str | None:
    power = source.power
    assert power is not None
    return _joules(power.per_sample(power.counter_j), power.per_sample(power.integral_j))


def _source(source: NodeSource) -> str:
    """A node source's mean power over the windows, what it comes from, its achieved rate."""
    rate = number(source.hz, ".2g") + " Hz"
    if source.power is None:
        return f"{source.source} {NA}: {source.na} ({rate})"
    power = source.power
    basis = "energy counter" if power.basis == "counter" else f"{power.readings} readings"
    return f"{source.source} {power.mean_w:.4g} ({basis}, {rate})"


def _idle(figures: Figures, idle: IdleFloor | None) -> str:
    """The idle floor per scope (chip, each node source), and the windows' power above it."""
    if idle is None:
        return "idle not measured"
    if idle.seconds is None:
        return f"{NA}: {idle.na}"
    if idle.chip_w:
        chip = f"chip {idle.chip_w[0]:.4g}*{len(idle.chip_w)}"
        if figures.power and figures.power_scope == idle.chip_scope:
            chip += f" ({figures.power.total_w - sum(idle.chip_w):+.4g} in the windows)"
    else:
        chip = f"chip {NA}: no accelerator power source"
    during = {s.source: s.power.mean_w for s in figures.node_power or [] if s.power}
    node = [
        f"{source} {watts:.4g}"
        + (f" ({during[source] - watts:+.4g} in the windows)" if source in during else "")
        for source, watts in idle.node_w.items()
    ]
    return "; ".join([chip, *(node or [NO_NODE_SOURCE])]) + f" (idle {idle.seconds:.3g} s)"


def _weights(run: RunSummary) -> str:
    """What an infer run's weights were: its set's converge run's checkpoint, or not."""
    assert run.inference is not None
    weights = run.inference
    if weights.weights_from:
        return f"{weights.weights_from}'s weights"
    return "random weights" if weights.weights == "random" else weights.weights


def inference_row(result: Result, run: RunSummary) -> dict[str, str]:
    """One infer run as a row of the inference table, in the seed table's style: the config
    cell says the scenario, the engine and whose weights; a figure that cannot be computed
    is N/A with its reason."""
    plan, inference = result.plan, run.inference
    config = [run.framework or plan.runtime, _config(result)]
    if inference:
        config.append(f"bs:{inference.batch_size}")
    config += [f"{run.nproc}x", plan.precision, str(run.scenario), str(run.engine)]
    row = {
        **_head(result, run.status == "incomplete"),
        "config": ", ".join(config)
        + (f", {_weights(run)}" if inference else "")
        + _implementation(result)
        + (", synthetic data" if run.synthetic_data else ""),
    }
    if run.status != "success" or inference is None:
        word = "failed" if run.status == "aborted" else run.status
        return row | dict.fromkeys(INFER_COLUMNS[4:], word) | {"throughput": f"{word}: {run.why}"}
    speed, latency, accuracy = run.speed, inference.latency, inference.accuracy
    no_power = f"{NA}: {_why(run, 'power')}"
    energy = _energy_columns(run, result.idle, "energy (J/inference)")
    if energy["energy (J/inference)"] == NA:
        energy["energy (J/inference)"] = no_power
    figures = {
        "throughput": f"{speed.value:.1f}/s ({speed.windows} windows)"
        if speed
        else f"{NA}: {run.speed_na}",
        "latency (ms)": f"p50 {latency.p50_ms:.3g}, p90 {latency.p90_ms:.3g}, "
        f"p99 {latency.p99_ms:.3g} ({latency.queries} queries)"
        if latency
        else f"{NA}: {inference.latency_na}",
        "accuracy": f"{accuracy.value:.4g} ({'reached' if accuracy.converged else 'missed'})"
        if accuracy
        else f"{NA}: {inference.accuracy_na}",
        "power (W)": _power(run) if run.power else no_power,
        "memory (GB)": _memory(run) if run.memory else f"{NA}: {_why(run, 'memory')}",
    }
    return row | figures | energy


def _why(run: RunSummary, figure: str) -> str:
    """Why a run has no figure: its note on it (the assessment wrote one)."""
    return next((n.split(": ", 1)[1] for n in run.notes if n.startswith(f"{figure}: ")), "none")


def markdown_rows(columns: tuple[str, ...], rows: list[dict[str, str]]) -> list[str]:
    """A Markdown table of `rows` in `columns` order (a cell's `|` written as `/`)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(row[c].replace("|", "/") for c in columns) + " |")
    return lines


def training_results(results: list[Result]) -> list[Result]:
    """The results with training runs (speed, converge): each a row of the seed table."""
    return [r for r in results if any(p.mode != "infer" for p in r.plan.runs)]


def inference_rows(results: list[Result]) -> list[dict[str, str]]:
    """Every infer run of the results, a row each."""
    return [inference_row(result, run) for result in results for run in result.infer_runs]


def markdown_table(results: list[Result]) -> str:
    """The seed table in Markdown (a row per result with training runs), then the inference
    table (a row per infer run) when there are infer runs."""
    training, infer = training_results(results), inference_rows(results)
    lines = (
        markdown_rows(SEED_COLUMNS, [seed_row(r) for r in training])
        if training or not infer
        else []
    )
    if infer:
        lines += [*(["", "Inference", ""] if lines else []), *markdown_rows(INFER_COLUMNS, infer)]
    return "\n".join(lines)


def templates() -> Environment:
    return Environment(loader=TEMPLATES, autoescape=select_autoescape(default=True))


def html_report(result: Result, run_set: Path) -> str:
    """A self-contained HTML page: the seed row, the plots (inline SVG), the runs and notes."""
    return templates().get_template("report.html").render(**page_context(result, run_set))


def html_suite_report(title: str, models: list[tuple[Result, Path]]) -> str:
    """A self-contained HTML page of a whole evaluation: the seed table, then each model's
    plots, runs and notes. models: each result with the run set that holds its artifacts."""
    sections = [page_context(result, run_set) for result, run_set in models]
    rows = [section["row"] for section in sections if section["training"]]
    infer_rows = [row for section in sections for row in section["infer_rows"]]
    return (
        templates()
        .get_template("suite.html")
        .render(
            title=title,
            columns=SEED_COLUMNS,
            rows=rows,
            sections=sections,
            infer_columns=INFER_COLUMNS,
            infer_rows=infer_rows,
        )
    )


def page_context(result: Result, run_set: Path) -> dict:
    """What result_body.html shows; run_set holds the raw artifacts the over-time plots read."""
    return {
        "result": result,
        "row": seed_row(result),
        "training": bool(training_results([result])),  # the seed row says something
        "infer_columns": INFER_COLUMNS,
        "infer_rows": inference_rows([result]),
        "runs": result.runs,
        "plots": result_plots(result, run_set),
    }
