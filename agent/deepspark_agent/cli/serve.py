"""`deepspark-agent serve-bench`: an OpenAI-compatible endpoint's serving figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from deepspark_agent import serving, serving_report
from deepspark_agent.console import JsonOpt, console, err_console, user_errors
from deepspark_agent.exits import EXIT_FAILED
from deepspark_agent.tables import serving_table

EndpointOpt = Annotated[
    str, typer.Option(help="The server's base URL, e.g. http://localhost:8000 (/v1 or not).")
]
ModelOpt = Annotated[str, typer.Option(help="The model name the server serves.")]
RateOpt = Annotated[float | None, typer.Option(help="Poisson arrivals, requests/s [4].")]
RatesOpt = Annotated[
    str | None, typer.Option(help="A sweep, e.g. 1,2,4,8: each rate in turn, the same prompts.")
]
ConcurrencyOpt = Annotated[
    int | None, typer.Option(min=1, help="Requests in flight at most (default: no cap).")
]
WordsOpt = Annotated[int, typer.Option(min=1, help="Prompt length in words of a fixed vocabulary.")]
TargetOpt = Annotated[
    float | None, typer.Option(min=0, help="Find the highest rate whose p90 TTFT meets it.")
]
ApiOpt = Annotated[
    str, typer.Option(help="completions (/v1/completions) or chat (/v1/chat/completions).")
]
KeyFileOpt = Annotated[
    Path | None, typer.Option(help="A file holding the API key (sent as a Bearer token).")
]
ReportOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="Write serve-bench.json and .md here.")
]


@user_errors
def serve_bench(
    endpoint: EndpointOpt,
    model: ModelOpt,
    requests: Annotated[int, typer.Option(min=1, help="Requests per rate.")] = 100,
    rate: RateOpt = None,
    rates: RatesOpt = None,
    concurrency: ConcurrencyOpt = None,
    input_words: WordsOpt = 64,
    output_tokens: Annotated[int, typer.Option(min=1, help="Tokens asked of each answer.")] = 64,
    seed: Annotated[int, typer.Option(help="Fixes the prompts and the arrival times.")] = 0,
    target_ttft_ms: TargetOpt = None,
    api: ApiOpt = "completions",
    api_key_file: KeyFileOpt = None,
    out: ReportOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Time to first token, time per output token, latency and requests/s of an
    OpenAI-compatible server (vLLM, ...), streamed, at seeded Poisson arrivals; with --rates
    and --target-ttft-ms, the highest rate whose p90 TTFT meets the target."""
    if rate is not None and rates is not None:
        raise serving.ServeBenchError("give --rate or --rates, not both")
    if api not in ("completions", "chat"):
        raise serving.ServeBenchError(f"--api is completions or chat, not {api!r}")
    settings = serving.Settings(
        endpoint=serving.base_url(endpoint), model=model, api=api, requests=requests,
        rates=serving.parse_rates(rates or str(4.0 if rate is None else rate)),
        concurrency=concurrency,
        input_words=input_words, output_tokens=output_tokens, seed=seed,
        target_ttft_ms=target_ttft_ms,
    )  # fmt: skip
    key = api_key_file.read_text().strip() if api_key_file else None
    bench = serving.run(settings, key)
    written = serving_report.write(bench, out) if out else []
    if as_json:
        print(bench.model_dump_json(indent=2))
    else:
        console.print(serving_table(bench))
        for line in serving_report.setting_lines(bench) + serving_report.error_lines(bench):
            console.print(escape(line), highlight=False)
        for path in written:
            console.print(f"report: {path}", highlight=False)
    if not any(at.completed for at in bench.rates):
        first = escape(next(iter(bench.rates[0].errors)))
        err_console.print(f"[red]error:[/] no request was answered ({first})", highlight=False)
        raise typer.Exit(EXIT_FAILED)
