"""`deepspark-agent`: the host agent's command line, one module per command group; each
command parses its options, calls a service and prints."""

from __future__ import annotations

from typing import Annotated

import typer

from deepspark_agent import __version__
from deepspark_agent.cli import compare, host, keys, report, run, serve, submit, up
from deepspark_agent.cli.baseline import baseline_app, diagnose
from deepspark_agent.cli.bundle import bundle_app
from deepspark_agent.cli.data import data_app
from deepspark_agent.cli.images import images_app
from deepspark_agent.console import console

app = typer.Typer(
    help="DeepSpark Bench host agent: run training workloads, measure six dimensions.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"deepspark-agent {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """DeepSpark Bench host agent."""


app.command()(host.doctor)
app.command()(host.devices)
app.add_typer(host.models_app, name="models")
app.command()(run.run)
app.command()(report.report)
app.command()(compare.compare)
app.command()(up.up)
app.add_typer(images_app, name="images")
app.add_typer(bundle_app, name="bundle")
app.add_typer(data_app, name="data")
app.add_typer(keys.keys_app, name="keys")
app.command("verify")(keys.verify)
app.command("submit")(submit.submit_command)
app.command("pack")(submit.pack_command)
app.command("serve-bench")(serve.serve_bench)
app.add_typer(baseline_app, name="baseline")
app.command()(diagnose)
