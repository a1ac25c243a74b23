"""`deepspark-agent images ...`: build, push, pull and list workload images."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn
from rich.table import Table

from deepspark_agent import images
from deepspark_agent.console import JsonOpt, WorkloadsOpt, console, err_console, user_errors
from deepspark_agent.workloads import find_workload

images_app = typer.Typer(help="Build, push, pull and list workload images.", no_args_is_help=True)

ModelsArg = Annotated[list[str], typer.Argument(help="Workload names, see `models list`.")]
RegistryOpt = Annotated[str, typer.Option(help="Registry host[:port], e.g. 127.0.0.1:5000.")]
UserOpt = Annotated[
    str | None, typer.Option(help="Registry user (default: the Docker config's credentials).")
]
PasswordOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the registry password from stdin.")
]


def _auth(username: str | None, password_stdin: bool) -> images.Auth:
    if username is None:
        return None  # the SDK uses the Docker config's credentials for this registry
    if not password_stdin:
        raise images.ImageError("--username needs --password-stdin")
    return {"username": username, "password": sys.stdin.readline().rstrip("\n")}


class LayerBars:
    """One progress bar per layer, fed by the engine's push/pull messages."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, message: dict[str, Any]) -> None:
        layer = message.get("id")
        detail = message.get("progressDetail") or {}
        if not layer or "status" not in message:
            return
        if layer not in self.tasks:
            self.tasks[layer] = self.progress.add_task(layer, total=None)
        self.progress.update(
            self.tasks[layer],
            description=f"{layer} {message['status']}",
            completed=detail.get("current"),
            total=detail.get("total"),
        )


def byte_bars() -> Progress:
    """Bars in bytes on stderr: layers pushed or pulled, images bundled."""
    columns = (TextColumn("{task.description:<28}"), BarColumn(), DownloadColumn())
    return Progress(*columns, console=err_console)


@images_app.command("build")
@user_errors
def build(
    models: ModelsArg,
    base: Annotated[
        str | None,
        typer.Option(
            help="Base image (ARG BASE_IMAGE); default: the CPU base of its framework. "
            "NVIDIA GPUs: deepspark/base:cuda; AMD: deepspark/base:rocm; another vendor: its "
            "copy of dockerfiles/vendor-sdk (scripts/build-base-image FLAVOR on a connected "
            "host; dockerfiles/README.md)."
        ),
    ] = None,
    workloads: WorkloadsOpt = None,
) -> None:
    """Build deepspark/<model>:<version> (model_images/Dockerfile, or the workload's own).

    The base gives Python, the framework and the accelerator's stack: deepspark/base:cpu or
    :paddle-cpu (built offline), :cuda or :rocm (FROM the vendor's framework image, built on a
    host that reaches its registry; carry the images to an offline host in a bundle)."""
    client = images.engine()
    for name in models:
        workload = find_workload(name, workloads or [])
        with err_console.status(f"building {workload.image}") as status:

            def show(message: dict[str, Any], image: str = workload.image) -> None:
                line = str(message.get("stream", "")).strip()
                if line.startswith("Step "):
                    status.update(f"building {image}: {line}")

            ref = images.build(client, workload, base, show)
        console.print(f"built {ref.tag} {ref.id}", highlight=False)


@images_app.command("push")
@user_errors
def push(
    models: ModelsArg,
    registry: RegistryOpt,
    username: UserOpt = None,
    password_stdin: PasswordOpt = False,
    workloads: WorkloadsOpt = None,
) -> None:
    """Push images to a registry; prints each pushed reference with its digest."""
    client, auth = images.engine(), _auth(username, password_stdin)
    for name in models:
        workload = find_workload(name, workloads or [])
        with byte_bars() as progress:
            pinned = images.push(client, workload, registry, auth, LayerBars(progress))
        console.print(pinned, highlight=False)


@images_app.command("pull")
@user_errors
def pull(
    models: ModelsArg,
    registry: RegistryOpt,
    digest: Annotated[
        str | None, typer.Option(help="Pull this digest (sha256:...) instead of the tag.")
    ] = None,
    username: UserOpt = None,
    password_stdin: PasswordOpt = False,
    workloads: WorkloadsOpt = None,
) -> None:
    """Pull images by tag or digest and tag them with their local names."""
    client, auth = images.engine(), _auth(username, password_stdin)
    if digest and len(models) > 1:
        raise images.ImageError("--digest names one image: pull one model at a time")
    for name in models:
        workload = find_workload(name, workloads or [])
        with byte_bars() as progress:
            ref = images.pull(client, workload, registry, digest, auth, LayerBars(progress))
        console.print(f"pulled {ref.tag} {ref.id}", highlight=False)


@images_app.command("list")
@user_errors
def list_(as_json: JsonOpt = False) -> None:
    """The deepspark/* images present on this engine."""
    rows = images.local_images(images.engine())
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("tags", "model", "contract", "id", "size (MB)", "revision")
    for row in rows:
        table.add_row(
            ", ".join(row["tags"]), row["model"], row["contract"], row["id"][:19],
            f"{row['size_mb']:g}", row["revision"][:12],
        )  # fmt: skip
    console.print(table)
