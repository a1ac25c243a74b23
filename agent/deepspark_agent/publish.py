"""After a run set is assessed: its reports, its signature, its submission; one line each."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from deepspark_agent.submit import Outcome, submit_run_set
from deepspark_core.attest import sign_run_set
from deepspark_core.files import write_atomic
from deepspark_core.report import html_report, markdown_table
from deepspark_core.results import Result
from deepspark_core.runset import REPORT_HTML, REPORT_MD
from deepspark_core.signing import PRIVATE_KEY_NAME, default_key_dir, init_keys, load_private_key

COLORS = {"created": "green", "duplicate": "green", "queued": "yellow"}


def publish(run_set: Path, result: Result, out: Console, collector: str | None) -> None:
    """The run set's reports, signature and submission; where it lies."""
    write_atomic(run_set / REPORT_MD, (markdown_table([result]) + "\n").encode())
    write_atomic(run_set / REPORT_HTML, html_report(result, run_set).encode())
    sign_if_keyed(run_set, result, out)
    if collector:
        submit_after_run(run_set, collector, out)
    out.print(f"run directory: {run_set}", highlight=False)


def ensure_key(out: Console) -> None:
    """`up` signs what it measures: on its first use on a host it creates the host's key."""
    if (default_key_dir() / PRIVATE_KEY_NAME).exists():
        return
    info = init_keys()
    out.print(
        f"signing key created: id {info.key_id}, public key {info.public_path} "
        "(a collector registers it: `deepspark-agent keys show`)",
        highlight=False,
    )


def sign_if_keyed(run_set: Path, result: Result, out: Console) -> None:
    """Sign the run set when this host has a key; say in one line what happened."""
    key_dir = default_key_dir()
    if not (key_dir / PRIVATE_KEY_NAME).exists():
        out.print("unsigned: no signing key (`deepspark-agent keys init` creates one)")
        return
    envelope = sign_run_set(run_set, result, load_private_key(key_dir))
    out.print(f"signed: {envelope}", highlight=False)


def submit_after_run(run_set: Path, url: str, out: Console) -> None:
    """After signing: submit, and say in one line what happened; never fails the run (an
    unreachable collector leaves the bundle queued for `submit --flush`)."""
    result = submit_run_set(run_set, url)
    print_outcome(result, out)
    if result.status == "queued":
        out.print(f"`deepspark-agent submit --flush --collector {url}` sends it later")


def print_outcome(result: Outcome, out: Console) -> None:
    """One submission's line: its status, the receipt's id, the detail."""
    color = COLORS.get(result.status, "red")
    ident = f"id {result.receipt.submission_id}, " if result.receipt else ""
    out.print(
        f"[{color}]{result.status}[/] {result.bundle}: {ident}{result.detail}", highlight=False
    )
