"""`deepspark-agent baseline create` and `diagnose`: a known-good stack's figures, and an
evaluation checked against them with a verdict a CI can gate on (its exit code)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepspark_agent import baselines
from deepspark_agent.console import JsonOpt, console, user_errors
from deepspark_agent.exits import EXIT_OK, EXIT_REGRESSION
from deepspark_core.diagnosis import markdown

baseline_app = typer.Typer(
    help="Baselines: each model's figures over known-good evaluations.", no_args_is_help=True
)

EvalArg = Annotated[Path, typer.Argument(help="An `up` evaluation directory or a run set.")]


@baseline_app.command("create")
@user_errors
def create(
    evaluations: Annotated[
        list[Path], typer.Argument(help="`up` evaluation directories or run sets, known good.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The baseline file to write.")],
    as_json: JsonOpt = False,
) -> None:
    """Per model and figure, the mean over the evaluations and its spread (min, max, sd)."""
    made = baselines.create(evaluations, out)
    if as_json:
        print(made.model_dump_json(indent=2))
        return
    for key, model in made.models.items():
        console.print(
            f"{key}: {len(model.figures)} figures from {len(model.evaluations)} evaluations"
        )
    console.print(f"baseline: {out}", highlight=False)


@user_errors
def diagnose(
    evaluation: EvalArg,
    baseline: Annotated[Path, typer.Option(help="A baseline file (`baseline create`).")],
    rules: Annotated[
        Path | None, typer.Option(help="A rules TOML file (default: the built-in rules).")
    ] = None,
    as_json: JsonOpt = False,
    as_markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown.")] = False,
) -> None:
    """Check an evaluation against a baseline; exit 4 when any finding is a regression."""
    diagnosis = baselines.run(evaluation, baseline, rules)
    if as_json:
        print(diagnosis.model_dump_json(indent=2))
    elif as_markdown:
        print(markdown(diagnosis))
    else:
        console.print(baselines.findings_table(diagnosis))
    raise typer.Exit(EXIT_REGRESSION if diagnosis.verdict == "regression" else EXIT_OK)
