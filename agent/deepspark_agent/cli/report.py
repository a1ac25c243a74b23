"""`deepspark-agent report`: the six dimensions recomputed from a run set's raw artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deepspark_agent import evaluations
from deepspark_agent.console import JsonOpt, console, user_errors
from deepspark_agent.tables import print_result, result_tables
from deepspark_core.assess import assess
from deepspark_core.files import write_atomic
from deepspark_core.report import html_report, html_suite_report, markdown_table


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
) -> None:
    """Recompute the six dimensions from the raw artifacts and print them.

    One run set's (`run`, or one model of `up`), or every model's of an `up` evaluation."""
    if not (run_dir / evaluations.EVALUATION_FILE).is_file():
        result = assess(run_dir)
        if html:
            write_atomic(html, html_report(result, run_dir).encode())
        elif as_json:
            print(result.model_dump_json(indent=2))
        elif markdown:
            print(markdown_table([result]))
        else:
            print_result(result, console)
    else:
        models = [(assess(run_set), run_set) for run_set in evaluations.run_sets(run_dir)]
        results = [result for result, _ in models]
        if html:
            write_atomic(html, html_suite_report(run_dir.name, models).encode())
        elif as_json:
            print(json.dumps([r.model_dump(mode="json") for r in results], indent=2))
        elif markdown:
            print(markdown_table(results))
        else:
            console.print(*result_tables(results, run_dir.name, console.width))
    if html:
        console.print(f"report: {html}", highlight=False)
