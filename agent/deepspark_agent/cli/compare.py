"""`deepspark-agent compare`: results side by side, with ratios against the first side."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from deepspark_agent.console import (
    EXIT_BAD_INPUT,
    USER_ERRORS,
    JsonOpt,
    console,
    user_error,
    user_errors,
)
from deepspark_agent.sides import SideError, compare_sides
from deepspark_agent.submit import DEFAULT_TIMEOUT
from deepspark_agent.tables import compare_tables
from deepspark_core.files import write_atomic


@user_errors
def compare(
    sides: Annotated[
        list[str],
        typer.Argument(
            help="Two or more sides (A B C...): run sets (`run`, one model of `up`), `up` "
            "evaluations (every model), result bundles (`pack`), collector results "
            "(URL/api/v1/results/ID, or ID with --collector).",
            show_default=False,
        ),
    ],
    collector: Annotated[
        str | None, typer.Option("--collector", help="The collector of the sides given as IDs.")
    ] = None,
    as_json: JsonOpt = False,
    markdown: Annotated[bool, typer.Option(help="Print the tables as Markdown.")] = False,
    html: Annotated[
        Path | None, typer.Option(help="Write a self-contained HTML page with the plots here.")
    ] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per request.")] = DEFAULT_TIMEOUT,
) -> None:
    """Compare results in the seed table's columns: a row per side and model, a ratio row per
    side against the first (B/A), and what differs (config, precision, batch size, data,
    devices, framework). Each side is recomputed from its raw files where they are present.
    A side that names nothing usable exits 2."""
    if len(sides) < 2:
        raise user_error(SideError("compare needs two sides at least"), EXIT_BAD_INPUT)
    with tempfile.TemporaryDirectory(prefix="deepspark-compare-") as scratch:
        try:
            comparison = compare_sides(sides, collector, Path(scratch), timeout)
        except USER_ERRORS as exc:
            raise user_error(exc, EXIT_BAD_INPUT) from None
        if html:  # while the scratch folder holds the fetched and unpacked raw files
            write_atomic(html, comparison.html(" vs ".join(comparison.sides)).encode())
            console.print(f"compare: {html}", highlight=False)
        elif as_json:
            print(json.dumps(comparison.as_json(), indent=2))
        elif markdown:
            print(comparison.markdown())
        else:
            console.print(*compare_tables(comparison, console.width), sep="\n")
