"""The serving benchmark's report: one row per offered rate (the terminal's table and the
Markdown share it), what was measured against what, and the files written to --out."""

from __future__ import annotations

from pathlib import Path

from deepspark_agent.serving import AtRate, Percentiles, ServeBench
from deepspark_core.files import write_atomic
from deepspark_core.report import number

COLUMNS = (
    "rate (req/s)",
    "answered",
    "errors",
    "achieved req/s",
    "output tok/s",
    "TTFT p50/p90/p99 (ms)",
    "TPOT p50/p90/p99 (ms)",
    "latency p50/p90/p99 (ms)",
)
JSON_FILE, MARKDOWN_FILE = "serve-bench.json", "serve-bench.md"


def _ms(p: Percentiles) -> str:
    return " / ".join(number(v, ".1f") for v in (p.p50, p.p90, p.p99))


def row(at: AtRate) -> dict[str, str]:
    return dict(
        zip(
            COLUMNS,
            (
                f"{at.rate:g} (Poisson)",
                f"{at.completed}/{len(at.requests)}",
                str(sum(at.errors.values())),
                f"{at.request_rate:.2f}",
                f"{at.output_token_rate:.1f}",
                _ms(at.ttft_ms),
                _ms(at.tpot_ms),
                _ms(at.latency_ms),
            ),
            strict=True,
        )
    )


def setting_lines(bench: ServeBench) -> list[str]:
    """What was measured against what: enough to run the same benchmark again."""
    s = bench.settings
    return [
        f"endpoint {s.endpoint} (/v1/{'chat/' if s.api == 'chat' else ''}completions, "
        f"streamed), model {s.model}",
        f"seed {s.seed}: {s.requests} requests per rate, prompts of {s.input_words} words of a "
        f"fixed vocabulary, {s.output_tokens} output tokens each (greedy, ignore_eos), "
        f"concurrency {s.concurrency or 'uncapped'}; output tokens counted from {_counted(bench)}",
        f"requests/s at {_target(s.target_ttft_ms)}: {number(bench.rate_at_target, 'g')} "
        f"({bench.rate_at_target_note})",
    ]


def _target(ms: float | None) -> str:
    return "a target TTFT" if ms is None else f"p90 TTFT <= {ms:g} ms"


def _counted(bench: ServeBench) -> str:
    """Where the answered requests' output tokens come from: the server's usage, or the
    chunks that carried text (one token each on most servers; several when one batches)."""
    sources = {r.tokens_from for at in bench.rates for r in at.requests if r.error is None}
    named = {"usage": "the server's usage", "chunks": "the streamed chunks (no usage sent)"}
    return " and ".join(named[s] for s in sorted(sources)) or "no answer"


def error_lines(bench: ServeBench) -> list[str]:
    return [
        f"rate {at.rate:g}: {count} x {message}"
        for at in bench.rates
        for message, count in at.errors.items()
    ]


def markdown(bench: ServeBench) -> str:
    lines = ["# Serving benchmark", "", *(f"- {line}" for line in setting_lines(bench)), ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(at).values()) + " |" for at in bench.rates]
    errors = error_lines(bench)
    if errors:
        lines += ["", "Errors:", "", *(f"- {line}" for line in errors)]
    return "\n".join(lines) + "\n"


def write(bench: ServeBench, out: Path) -> list[Path]:
    """serve-bench.json (the settings and every request, from which each figure is recomputed)
    and serve-bench.md, each written atomically."""
    paths = [out / JSON_FILE, out / MARKDOWN_FILE]
    write_atomic(paths[0], bench.model_dump_json(indent=2).encode())
    write_atomic(paths[1], markdown(bench).encode())
    return paths
