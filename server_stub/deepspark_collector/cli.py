"""`deepspark-collector serve`: the collector under uvicorn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from deepspark_collector.app import prepare
from deepspark_collector.settings import WORKER_SETTINGS_ENV, Settings, SettingsError

app = typer.Typer(help="DeepSpark collector: verifies signed results and compares platforms.")


@app.callback()
def main() -> None:
    """DeepSpark collector."""


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Database, receipt key and spool (default ./collector-data)."),
    ] = None,
    db_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (default: SQLite in the data dir).")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(min=1, help="Processes serving (each with its own rate limiter: see README)."),
    ] = 1,
) -> None:
    """Serve the collector's API."""
    try:
        settings = Settings.from_env(data_dir=data_dir, db_url=db_url)
        prepare(settings)  # once, here: the workers find the database and data dir ready
    except (SettingsError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"collector: {settings.data_dir} prepared, {workers} worker(s)", err=True)
    os.environ[WORKER_SETTINGS_ENV] = settings.for_workers()
    factory = "deepspark_collector.app:worker_app"
    uvicorn.run(factory, factory=True, host=host, port=port, workers=workers)
