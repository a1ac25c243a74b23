"""`deepspark-agent submit`, and the submission that `run`/`up --collector` make after signing."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from deepspark_agent.console import JsonOpt, console, user_errors
from deepspark_agent.submit import DEFAULT_TIMEOUT, Outcome, flush, outbox_dir, outcome, submit
from deepspark_core.result_bundle import ResultBundleError, pack_run_set

CollectorOpt = Annotated[
    str | None,
    typer.Option("--collector", help="Collector URL: submit the signed result after the run."),
]
COLORS = {"created": "green", "duplicate": "green", "queued": "yellow"}


def submit_run_set(
    run_set: Path, url: str, timeout: float = DEFAULT_TIMEOUT, vendor: str | None = None
) -> Outcome:
    """Pack the signed run set and submit it; what became of it, named by the run set.

    A file instead of a directory is a result bundle already packed (`deepspark-agent pack`,
    carried out of an air-gapped site): it is submitted as it is.
    """
    if run_set.is_file():
        return outcome(run_set, lambda: submit(run_set, url, timeout, vendor))
    with tempfile.TemporaryDirectory(prefix="deepspark-submit-") as tmp:
        try:
            bundle = pack_run_set(run_set, Path(tmp) / "bundle.tar")
        except ResultBundleError as exc:
            return Outcome(str(run_set), "error", str(exc))
        result = outcome(bundle, lambda: submit(bundle, url, timeout, vendor))
    return dataclasses.replace(result, bundle=str(run_set))


def print_outcome(result: Outcome, out: Console) -> None:
    color = COLORS.get(result.status, "red")
    ident = f"id {result.receipt.submission_id}, " if result.receipt else ""
    out.print(
        f"[{color}]{result.status}[/] {result.bundle}: {ident}{result.detail}", highlight=False
    )


def submit_after_run(run_set: Path, url: str, out: Console) -> None:
    """After signing: submit, and say in one line what happened; never fails the run (an
    unreachable collector leaves the bundle queued for `submit --flush`)."""
    result = submit_run_set(run_set, url)
    print_outcome(result, out)
    if result.status == "queued":
        out.print(f"`deepspark-agent submit --flush --collector {url}` sends it later")


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
