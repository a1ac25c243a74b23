"""The terminal's tables: a result's seed row and runs, an evaluation's seed table, a
suite's plan, the serving benchmark's rates."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from deepspark_agent import serving_report
from deepspark_agent.serving import ServeBench
from deepspark_core.report import SEED_COLUMNS, number, seed_row
from deepspark_core.results import Result, RunSummary

WIDE = 150  # terminal columns the seed row needs to print unfolded


def _run_row(run: RunSummary) -> list[str]:
    return [
        run.label,
        run.mode,
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
    console.print(suite_table([result], "DeepSpark six dimensions", console.width))

    runs = Table(title="runs", title_justify="left")
    for column in ("run", "mode", "seed", "ranks", "status", "speed", "end-to-end", "accuracy",
                   "peak mem (GB)", "reason"):  # fmt: skip
        runs.add_column(column)
    for run in result.runs:
        runs.add_row(*_run_row(run))
    console.print(runs)
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]")


def suite_table(results: list[Result], title: str, width: int = WIDE) -> Table:
    """The seed table: one row per model; on a terminal narrower than the row, one column
    per model instead (a narrow terminal would fold every cell)."""
    rows = [seed_row(result) for result in results]
    table = Table(title=title, title_justify="left")
    if width >= WIDE:
        for column in SEED_COLUMNS:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*row.values())
        return table
    table.add_column("")
    for row in rows:
        table.add_column(row["model"], overflow="fold")
    for column in SEED_COLUMNS:
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
