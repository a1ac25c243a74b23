"""`deepspark-agent bundle ...`: offline bundles, a suite and its images in one archive."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deepspark_agent import images
from deepspark_agent.bundle import check_bundle, create_bundle, import_offline, summary
from deepspark_agent.cli.images import byte_bars
from deepspark_agent.console import JsonOpt, WorkloadsOpt, console, err_console, user_errors
from deepspark_agent.suites import load_suite, suite_path

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
    with byte_bars() as progress:
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
        f"verified {bundle}: suite {suite.name}, {summary(manifest)}; created "
        f"{manifest.created:%Y-%m-%d %H:%M} UTC by agent {manifest.agent_version}",
        highlight=False,
    )


@bundle_app.command("import")
@user_errors
def bundle_import(bundle: BundleArg, workdir: WorkdirOpt = None) -> None:
    """Verify a bundle (as `bundle verify`), then load its images (nothing loads otherwise)."""
    import_offline(bundle, console, err_console, workdir)
