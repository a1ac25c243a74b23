"""`deepspark-collector serve`: the collector under uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from deepspark_collector.app import create_app
from deepspark_collector.settings import Settings, SettingsError

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
) -> None:
    """Serve the collector's API."""
    try:
        settings = Settings.from_env(data_dir=data_dir, db_url=db_url)
        application = create_app(settings)
    except (SettingsError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    uvicorn.run(application, host=host, port=port)
