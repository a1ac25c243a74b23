"""`deepspark-agent submit` and `pack`: signed run sets to a collector, or into one bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deepspark_agent.console import JsonOpt, console, user_errors
from deepspark_agent.publish import print_outcome
from deepspark_agent.submit import DEFAULT_TIMEOUT, flush, outbox_dir, submit_run_set
from deepspark_core.result_bundle import pack_run_set


@user_errors
def submit_command(
    collector: Annotated[str, typer.Option("--collector", help="Collector URL.")],
    run_dirs: Annotated[
        list[Path] | None,
        typer.Argument(help="Signed run directories, or result bundles made by `pack`."),
    ] = None,
    flush_outbox: Annotated[
        bool, typer.Option("--flush", help="Also retry every bundle queued in the outbox.")
    ] = False,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per request.")] = DEFAULT_TIMEOUT,
    vendor: Annotated[
        str | None,
        typer.Option(
            "--vendor",
            help="Claim whose results these are: the collector credits only a verified key of "
            "this vendor (needed when keys of several vendors signed).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit signed run sets to a collector; exit 1 if any is rejected or still queued."""
    if not run_dirs and not flush_outbox:
        raise typer.BadParameter("name run directories to submit, or --flush")
    results = [submit_run_set(run_set, collector, timeout, vendor) for run_set in run_dirs or []]
    if flush_outbox:
        results += flush(collector, timeout, vendor)
    if as_json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for result in results:
            print_outcome(result, console)
    left = sorted(outbox_dir().glob("*.tar"))
    if left and not as_json:
        console.print(f"{len(left)} bundle(s) queued in {outbox_dir()}", highlight=False)
    if left or any(r.status not in ("created", "duplicate") for r in results):
        raise typer.Exit(1)


@user_errors
def pack_command(
    run_dir: Annotated[Path, typer.Argument(help="A signed run directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The result bundle to write.")],
) -> None:
    """Pack a signed run set into one result bundle.

    The bundle is what travels out of an air-gapped site, to be submitted elsewhere with
    `submit FILE`."""
    bundle = pack_run_set(run_dir, out)
    console.print(f"wrote {bundle} ({bundle.stat().st_size / 1e6:.1f} MB)", highlight=False)
