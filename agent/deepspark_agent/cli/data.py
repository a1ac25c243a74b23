"""`deepspark-agent data ...`: list the workloads' datasets, prepare one, verify one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from deepspark_agent import datasets
from deepspark_agent.console import JsonOpt, WorkloadsOpt, console, err_console, user_errors
from deepspark_agent.progress import job_bars
from deepspark_agent.workloads import find_workload
from deepspark_core.datasets import MANIFEST, VERIFIED_ENV, verify_manifest

data_app = typer.Typer(
    help="The real datasets: which each workload trains on, prepare one, verify one.",
    no_args_is_help=True,
)


@data_app.command("list")
@user_errors
def list_(workloads: WorkloadsOpt = None, as_json: JsonOpt = False) -> None:
    """Every workload's dataset: name, size, licence, where to get it, and whether it stands in
    for a corpus that is not public; "generated only" where the presets make their data."""
    rows = datasets.catalog(workloads or [])
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("workload", "dataset", "size", "licence", "url", "note")
    for row in rows:
        d = row["dataset"]
        if d is None:
            table.add_row(row["workload"], "generated only", "", "", "", "")
        else:
            note = f"stand-in: {d['stand_in']}" if d["stand_in"] else ""
            table.add_row(
                row["workload"], d["name"], d["size"], d["licence"], d["url"], escape(note)
            )
    console.print(table)


@data_app.command("prepare")
@user_errors
def prepare(
    model: Annotated[str, typer.Argument(help="The workload, see `data list`.")],
    src: Annotated[Path, typer.Option("--from", help="The dataset in its official layout.")],
    dst: Annotated[Path, typer.Option("--to", help="Where the workload's layout goes.")],
    workloads: WorkloadsOpt = None,
) -> None:
    """Convert the official layout into the workload's and write its SHA256SUMS; run again
    after an interruption, it goes on where it stopped."""
    workload = find_workload(model, workloads or [])
    with job_bars(err_console, f"converting {model}", f"hashing {dst}") as (converting, hashing):
        digest = datasets.prepare(workload, src, dst, converting, hashing)
    console.print(f"{dst / MANIFEST}: sha256 {digest}", highlight=False)


@data_app.command("verify")
@user_errors
def verify(
    root: Annotated[Path, typer.Argument(help="A dataset directory holding SHA256SUMS.")],
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Hash every file, even if verified before.")
    ] = False,
) -> None:
    """Check every file against the dataset's SHA256SUMS (a second time on this host: a stat of
    each file); prints the manifest's digest, the value of DS_DATA_VERIFIED for a run by hand."""
    with job_bars(err_console, f"verifying {root}") as (bar,):
        digest, files = verify_manifest(root, bar, cache=not no_cache)
    console.print(f"{files} files verified; {VERIFIED_ENV}={digest}", highlight=False)
