"""The terminal's tables: a result's seed row and runs, an evaluation's seed table, a
suite's plan, the serving benchmark's rates."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from deepspark_agent import serving_report
from deepspark_agent.serving import ServeBench
from deepspark_core.compare import COLUMNS, INFER_TABLE, Comparison
from deepspark_core.report import (
    INFER_COLUMNS,
    SEED_COLUMNS,
    inference_rows,
    number,
    seed_row,
    training_results,
)
from deepspark_core.results import NodeFigures, Result, RunSummary

WIDE = 150  # terminal columns the seed row needs to print unfolded


def _run_row(run: RunSummary) -> list[str]:
    return [
        run.label,
        run.mode + (f" ({run.scenario}, {run.engine})" if run.mode == "infer" else ""),
        str(run.seed),
        f"{run.nproc}x" + (f"*{run.nnodes}n" if run.nnodes > 1 else ""),
        run.status if run.status == "success" else f"[red]{run.status}[/]",
        number(run.speed.value if run.speed else None, ".1f"),
        number(run.end_to_end_speed, ".1f"),
        number(run.accuracy),
        number(max(run.memory.peak_gb) if run.memory else None, ".2f"),
        escape(run.why),  # a workload's text, not markup
    ]


def print_result(result: Result, console: Console) -> None:
    for table in result_tables([result], "DeepSpark six dimensions", console.width):
        console.print(table)

    runs = Table(title="runs", title_justify="left")
    for column in ("run", "mode", "seed", "ranks", "status", "speed", "end-to-end", "accuracy",
                   "peak mem (GB)", "reason"):  # fmt: skip
        runs.add_column(column)
    for run in result.runs:
        runs.add_row(*_run_row(run))
    console.print(runs)
    for run in result.runs:  # a multi-node run: a line per node, its own devices
        for node in run.nodes:
            console.print(f"{run.label} {node_line(node)}", highlight=False)
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]")


def node_line(node: NodeFigures) -> str:
    """One node's power (mean per device, energy) and memory (mean, peak per device)."""
    power = memory = "N/A"
    if node.power:
        power = f"{node.power.total_w:.0f} W over {node.power.devices} device(s)"
    if node.memory:
        mean, peak = node.memory.mean_gb, node.memory.peak_gb
        memory = f"{sum(mean) / len(mean):.2f} GB mean, {max(peak):.2f} GB peak per device"
    return f"node {node.node}: power {power}; memory {memory} ({node.scope or 'no telemetry'})"


def result_tables(results: list[Result], title: str, width: int = WIDE) -> list[Table]:
    """The seed table of the results with training runs, then the inference table of their
    infer runs (a row per scenario and engine), each where it has rows."""
    tables = []
    if training := training_results(results):
        tables.append(suite_table(training, title, width))
    if infer := inference_rows(results):
        tables.append(_table(INFER_COLUMNS, infer, f"{title}: inference", width))
    return tables


def suite_table(results: list[Result], title: str, width: int = WIDE) -> Table:
    """The seed table: one row per model."""
    return _table(SEED_COLUMNS, [seed_row(result) for result in results], title, width)


def compare_tables(comparison: Comparison, width: int = WIDE) -> list[Table | str]:
    """`compare`: where each side comes from, the seed table (then the inference table) with
    a row per side and model and its ratio row, and what differs."""
    title = " vs ".join(comparison.sides)
    tables: list[Table | str] = [
        escape(f"{side}: {comparison.sources[side]}") for side in comparison.sides
    ]
    if rows := comparison.rows():
        tables.append(_table(COLUMNS, rows, title, width))
    if infer := comparison.infer_rows():
        tables.append(_table(INFER_TABLE, infer, f"{title}: inference", width))
    return tables + [f"[yellow]differs:[/] {escape(note)}" for note in comparison.notes()]


def _table(columns: tuple[str, ...], rows: list[dict[str, str]], title: str, width: int) -> Table:
    """One row per result; on a terminal narrower than the row, one column per row instead
    (a narrow terminal would fold every cell)."""
    table = Table(title=title, title_justify="left")
    if width >= WIDE:
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(row[c] for c in columns))
        return table
    table.add_column("")
    for row in rows:
        table.add_column(row["model"], overflow="fold")
    for column in columns:
        table.add_row(column, *(row[column] for row in rows))
    return table


def plan_table(title: str, models: list[dict[str, Any]]) -> Table:
    """`up --plan`: one row per suite entry (evaluate.PlannedModel.describe), its runs."""
    table = Table(title=title, title_justify="left")
    for column in ("workload", "config", "precision", "batch", "runs", "budget (s)", "data"):
        table.add_column(column, overflow="fold")
    for m in models:
        runs = ", ".join(r["label"] for r in m["runs"])
        table.add_row(
            m["workload"], m["config"], m["precision"], str(m["batch_size"]), runs,
            number(m["budget_s"], "g"), m["data_dir"] or "synthetic or generated",
        )  # fmt: skip
    return table


def serving_table(bench: ServeBench) -> Table:
    """`serve-bench`: one row per offered rate."""
    table = Table(title=f"serving {bench.settings.model}", title_justify="left")
    for column in serving_report.COLUMNS:
        table.add_column(column)
    for at in bench.rates:
        table.add_row(*serving_report.row(at).values())
    return table
