"""`deepspark-collector serve`: the collector under uvicorn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from deepspark_collector.app import prepare
from deepspark_collector.limits import connection_limit, raise_nofile
from deepspark_collector.settings import (
    WORKER_SETTINGS_ENV,
    RateLimit,
    Settings,
    SettingsError,
    UploadLimits,
)

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
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Proxies (comma-separated addresses or networks, '*' for any) whose "
            "X-Forwarded-For and -Proto are believed; default none: the peer's address is the "
            "client's, for rate limits too."
        ),
    ] = None,
    limit_concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Connections served at once, past which uvicorn answers 503 (default: from "
            "the open-files limit, raised to its hard limit, at most 2048).",
        ),
    ] = None,
    max_uploads: Annotated[
        int, typer.Option(min=1, help="Submissions received at once; past it 503 at once.")
    ] = UploadLimits.concurrent,
    max_spool: Annotated[
        int,
        typer.Option(min=1, help="Bytes the submissions received at once may declare; then 503."),
    ] = UploadLimits.spool_bytes,
    body_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds a submission's body may pause; then 408.")
    ] = UploadLimits.idle_s,
    min_body_rate: Annotated[
        float,
        typer.Option(min=0, help="Bytes/s a body must keep up after --body-timeout; else 408."),
    ] = UploadLimits.min_rate,
    rate_burst: Annotated[
        int, typer.Option(min=1, help="Submissions at once per address and per signing key.")
    ] = RateLimit.burst,
    rate_per_minute: Annotated[
        float, typer.Option(min=0, help="Submissions a minute, sustained, per address and key.")
    ] = RateLimit.per_minute,
) -> None:
    """Serve the collector's API."""
    try:
        settings = Settings.from_env(
            data_dir=data_dir,
            db_url=db_url,
            uploads=UploadLimits(max_uploads, max_spool, body_timeout, min_body_rate),
            rate_limit=RateLimit(rate_burst, rate_per_minute),
        )
        prepare(settings)  # once, here: the workers find the database and data dir ready
    except (SettingsError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"collector: {settings.data_dir} prepared, {workers} worker(s)", err=True)
    os.environ[WORKER_SETTINGS_ENV] = settings.for_workers()
    uvicorn.run(
        "deepspark_collector.app:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=forwarded_allow_ips is not None,  # uvicorn's default trusts loopback
        forwarded_allow_ips=forwarded_allow_ips,
        limit_concurrency=limit_concurrency or connection_limit(raise_nofile()),
    )
