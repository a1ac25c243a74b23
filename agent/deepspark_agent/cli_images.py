"""`deepspark-agent images ...` and `bundle ...`: workload images, offline bundles."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import docker
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn
from rich.table import Table

from deepspark_agent import images
from deepspark_agent.bundle import Manifest, check_bundle, create_bundle, import_bundle
from deepspark_agent.console import JsonOpt, WorkloadsOpt, console, err_console, user_errors
from deepspark_agent.suites import load_suite, suite_path
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


_BYTES_COLUMNS = (TextColumn("{task.description:<28}"), BarColumn(), DownloadColumn())


def _bars() -> Progress:
    return Progress(*_BYTES_COLUMNS, console=err_console)


@images_app.command("build")
@user_errors
def build(
    models: ModelsArg,
    base: Annotated[
        str | None,
        typer.Option(help="Base image (ARG BASE_IMAGE); default: the CPU base of its framework."),
    ] = None,
    workloads: WorkloadsOpt = None,
) -> None:
    """Build deepspark/<model>:<version> (model_images/Dockerfile, or the workload's own)."""
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
        with _bars() as progress:
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
        with _bars() as progress:
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


bundle_app = typer.Typer(help="Offline bundles: a suite and its images in one archive.")


@bundle_app.command("create")
@user_errors
def bundle_create(
    out: Annotated[Path, typer.Option("--out", "-o", help="The bundle file to write.")],
    suite: Annotated[
        str, typer.Option(help="Suite name or path; its workloads' images.")
    ] = "smoke",
    workloads: WorkloadsOpt = None,
) -> None:
    """Write the suite and its workloads' images (docker save) into one verified archive."""
    path = suite_path(suite)
    tags = sorted({w.image for _, w in load_suite(suite).resolve(workloads or [])})
    with Progress(*_BYTES_COLUMNS, console=err_console) as progress:
        task = progress.add_task(f"bundle {len(tags)} image(s)", total=None)
        manifest = create_bundle(
            out, path, tags, images.engine(),
            lambda done, total: progress.update(task, completed=done, total=total),
        )  # fmt: skip
    for image in manifest.images:
        console.print(f"bundled {image.tag} {image.id}", highlight=False)
    console.print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)", highlight=False)


BundleArg = Annotated[Path, typer.Argument(help="A bundle written by `bundle create`.")]
WorkdirOpt = Annotated[
    Path | None,
    typer.Option(help="Where the bundle is extracted while checked (default: the temp dir)."),
]


def _summary(manifest: Manifest) -> str:
    return (
        f"{len(manifest.files)} files, {len(manifest.images)} image(s), "
        f"{manifest.total_size / 1e6:.1f} MB, every sha256 checked"
    )


@bundle_app.command("verify")
@user_errors
def bundle_verify(bundle: BundleArg, workdir: WorkdirOpt = None, as_json: JsonOpt = False) -> None:
    """Check a bundle completely with no engine: manifest, every sha256, image tars, suite."""
    with err_console.status(f"verifying {bundle}"):
        manifest, suite = check_bundle(bundle, workdir)
    if as_json:
        body = {"bundle": str(bundle), "verified": True, "suite": suite.name}
        print(json.dumps({**body, **manifest.model_dump(mode="json")}, indent=2))
        return
    images_by_file = {image.file: image for image in manifest.images}
    width = max(len(entry.name) for entry in manifest.files)
    for entry in manifest.files:  # one line each: names and digests stay whole for copying
        image = images_by_file.get(entry.name)
        line = f"{entry.name:<{width}}  {entry.size / 1e6:10.1f} MB  sha256:{entry.sha256[:16]}"
        console.print(line + (f"  {image.tag} {image.id}" if image else ""), highlight=False)
    console.print(
        f"verified {bundle}: suite {suite.name}, {_summary(manifest)}; created "
        f"{manifest.created:%Y-%m-%d %H:%M} UTC by agent {manifest.agent_version}",
        highlight=False,
    )


def import_offline(
    bundle: Path, out: Console, workdir: Path | None = None, suite_to: Path | None = None
) -> Manifest:
    """Verify the bundle with no engine and say so; only then connect and load its images."""
    with err_console.status(f"verifying {bundle}") as status:

        def connect(manifest: Manifest) -> docker.DockerClient:
            out.print(f"verified {bundle}: {_summary(manifest)}", highlight=False)
            status.update(f"loading {len(manifest.images)} image(s)")
            return images.engine()

        manifest = import_bundle(bundle, connect, workdir, suite_to=suite_to)
    for image in manifest.images:
        out.print(f"loaded {image.tag} {image.id}", highlight=False)
    return manifest


@bundle_app.command("import")
@user_errors
def bundle_import(bundle: BundleArg, workdir: WorkdirOpt = None) -> None:
    """Verify a bundle (as `bundle verify`), then load its images (nothing loads otherwise)."""
    import_offline(bundle, console, workdir)
