"""`deepspark-agent report`: the six dimensions recomputed from a run set's raw artifacts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Annotated

import typer

from deepspark_agent import evaluations
from deepspark_agent.console import JsonOpt, console, user_errors
from deepspark_agent.tables import print_result, result_tables
from deepspark_core import export
from deepspark_core.assess import assess
from deepspark_core.errors import DeepSparkError
from deepspark_core.files import write_atomic
from deepspark_core.report import html_report, html_suite_report, markdown_table

STDOUT = Path("-")


@user_errors
def report(
    run_dir: Annotated[
        Path, typer.Argument(help="A run set (`run`, one model of `up`) or an `up` evaluation.")
    ],
    as_json: JsonOpt = False,
    markdown: Annotated[bool, typer.Option(help="Print the table as Markdown.")] = False,
    html: Annotated[
        Path | None, typer.Option(help="Write a self-contained HTML report with plots here.")
    ] = None,
    csv: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Write the rows of the export schema (docs/exports.md) as CSV here; - prints.",
        ),
    ] = None,
    jsonl: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="The same rows as JSON Lines here; - prints."),
    ] = None,
) -> None:
    """Recompute the six dimensions from the raw artifacts and print them.

    One run set's (`run`, or one model of `up`), or every model's of an `up` evaluation.
    `--json` prints the whole result (deepspark.result/v2); `--csv` and `--jsonl` write
    flat rows of deepspark.export/v1 instead (a row per result, one per infer run)."""
    if csv == STDOUT and jsonl == STDOUT:
        raise DeepSparkError("--csv - and --jsonl - both print: give one of them a file")
    evaluation = (run_dir / evaluations.EVALUATION_FILE).is_file()
    run_sets = evaluations.run_sets(run_dir) if evaluation else [run_dir]
    models = [(assess(run_set), run_set) for run_set in run_sets]
    results = [result for result, _ in models]
    if csv or jsonl:
        rows = [row for result in results for row in export.rows(result)]
        _write(csv, export.csv_lines, rows)
        _write(jsonl, export.jsonl_lines, rows)
    elif html:
        page = html_suite_report(run_dir.name, models) if evaluation else html_report(*models[0])
        write_atomic(html, page.encode())
        console.print(f"report: {html}", highlight=False)
    elif as_json:
        dumped = [r.model_dump(mode="json") for r in results]
        print(json.dumps(dumped, indent=2) if evaluation else results[0].model_dump_json(indent=2))
    elif markdown:
        print(markdown_table(results))
    elif evaluation:
        console.print(*result_tables(results, run_dir.name, console.width))
    else:
        print_result(results[0], console)


def _write(
    path: Path | None,
    lines: Callable[[Iterable[export.Row]], Iterator[str]],
    rows: list[export.Row],
) -> None:
    """An export to its file (atomically), or printed for `-`."""
    if path == STDOUT:
        sys.stdout.writelines(lines(rows))
    elif path is not None:
        write_atomic(path, "".join(lines(rows)).encode())
        console.print(f"export: {path}", highlight=False)
