"""The serving benchmark against the project's own OpenAI-compatible server: the tiny GPT
(model_images/tiny_lm) trained here, served on a free port, measured by `serve-bench`."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import free_port
from deepspark_agent import serving
from deepspark_agent.serving import Sent, ServeBench

TINY_LM = Path(__file__).resolve().parents[1] / "model_images" / "tiny_lm"


@dataclass
class Served:
    url: str
    log: Path
    checkpoint: Path

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def _env() -> dict[str, str]:
    paths = [str(TINY_LM.parent), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


@contextlib.contextmanager
def _serving(checkpoint: Path, log: Path, *options: str | Path) -> Iterator[Served]:
    """tiny_lm's server on a port of its own choosing, every answered request logged."""
    serve = [sys.executable, TINY_LM / "serve.py", "--checkpoint", checkpoint, "--port", "0"]
    command = [*serve, "--log", log, *options]
    server = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        first = server.stdout.readline()  # "serving tiny-lm on http://127.0.0.1:PORT"
        assert first.startswith("serving tiny-lm on http://"), first
        log.touch()
        yield Served(first.split()[-1], log, checkpoint)
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Iterator[Served]:
    """The tiny GPT, trained for a few steps (its text need not be good, only generated),
    served."""
    tmp = tmp_path_factory.mktemp("tiny_lm")
    checkpoint = tmp / "tiny_lm.pt"
    train = [sys.executable, TINY_LM / "train.py", "--out", checkpoint, "--steps", "20"]
    subprocess.run(train, env=_env(), check=True, capture_output=True, timeout=120)
    with _serving(checkpoint, tmp / "requests.jsonl") as served:
        yield served


def test_serve_bench_measures_every_request_the_server_answered(tiny_lm, cli, tmp_path):
    before = len(tiny_lm.lines())
    args = ["--model", "tiny-lm", "--requests", "10", "--rates", "10,40", "--seed", "7",
            "--input-words", "12", "--output-tokens", "6", "--target-ttft-ms", "30000"]  # fmt: skip
    code, out, err = cli("serve-bench", "--endpoint", f"{tiny_lm.url}/v1", *args, "--json",
                         "--out", str(tmp_path))  # fmt: skip
    assert code == 0, err
    bench = ServeBench.model_validate_json(out)
    sent_by_server = tiny_lm.lines()[before:]
    prompts = [r.prompt for r in serving.workload(7, 10, 12, 1.0)]
    assert Counter(line["prompt"] for line in sent_by_server) == Counter(prompts * 2)
    assert {line["completion_tokens"] for line in sent_by_server} == {6}
    for at in bench.rates:
        assert at.completed == 10 and not at.errors
        for r in at.requests:
            assert r.ttft_ms <= r.latency_ms
            assert r.output_tokens == r.chunks == 6 and r.tokens_from == "usage"
        # the seed's arrivals, the same pattern at each rate
        expected = [q.at_s for q in serving.workload(7, 10, 12, at.rate)]
        assert [r.at_s for r in at.requests] == pytest.approx(expected)
        assert at.output_token_rate == pytest.approx(at.request_rate * 6)
    assert bench.rate_at_target == 40
    report = (tmp_path / "serve-bench.md").read_text()
    assert f"endpoint {tiny_lm.url} (/v1/completions, streamed), model tiny-lm" in report
    assert "seed 7: 10 requests per rate" in report
    assert ServeBench.model_validate_json((tmp_path / "serve-bench.json").read_text()) == bench


def test_chat_completions_and_the_table(tiny_lm, cli):
    code, out, err = cli("serve-bench", "--endpoint", tiny_lm.url, "--model", "tiny-lm",
                         "--api", "chat", "--requests", "3", "--rate", "20",
                         "--output-tokens", "4")  # fmt: skip
    assert code == 0, err
    assert re.search(r"20 \(Poisson\)\s*│\s*3/3\s*│\s*0\s*│", out)
    assert "(/v1/chat/completions, streamed)" in out
    assert "requests/s at a target TTFT: N/A (no target TTFT given)" in out


def test_the_same_seed_sends_the_same_prompts_at_the_same_times():
    first, again = (serving.workload(3, 50, 8, 2.0) for _ in range(2))
    assert first == again
    assert len({r.prompt for r in first}) == 50
    assert all(w in serving.VOCABULARY for r in first for w in r.prompt.split())
    assert serving.workload(4, 50, 8, 2.0) != first
    gaps = [b.at_s - a.at_s for a, b in itertools.pairwise(first)]
    assert first[0].at_s == 0 and all(g >= 0 for g in gaps)
    assert 0.25 < sum(gaps) / len(gaps) < 1.0  # Poisson at 2/s: mean gap 0.5 s


def test_percentiles_interpolate_between_ranks():
    p = serving.percentiles([float(v) for v in range(10, 0, -1)])  # 1..10, any order
    assert (p.p50, p.p90, p.p99) == pytest.approx((5.5, 9.1, 9.91))
    assert serving.percentiles([4.0]).p99 == 4.0
    assert serving.percentiles([]).p50 is None


def _at(rate: float, ttfts: list[float], error: str | None = None) -> serving.AtRate:
    sent = [Sent(index=i, at_s=0, sent_s=0, ttft_ms=t, latency_ms=t) for i, t in enumerate(ttfts)]
    if error:
        sent.append(Sent(index=len(sent), at_s=0, sent_s=0, error=error))
    return serving.summarize(rate, sent, 1.0)


def test_the_rate_at_target_is_the_highest_whose_p90_ttft_meets_it_with_no_error():
    rates = [_at(1, [10] * 10), _at(2, [10] * 9 + [90]), _at(4, [10] * 10, "HTTP 503: busy")]
    assert rates[2].errors == {"HTTP 503: busy": 1} and rates[2].completed == 10
    assert rates[1].ttft_ms.p90 == pytest.approx(18)  # 10 + 0.1 x (90 - 10)
    assert serving.rate_at_target(rates, 20)[0] == 2  # 4/s had an error
    assert serving.rate_at_target(rates, 17)[0] == 1
    best, note = serving.rate_at_target(rates, 5)
    assert best is None and note == "no rate met p90 TTFT <= 5 ms, every request answered"


class _NotStreaming(BaseHTTPRequestHandler):
    """A server that answers completions whole, and chat completions with 503."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        chat = self.path.endswith("/chat/completions")
        body = b'{"error": {"message": "overloaded"}}' if chat else b'{"choices": []}'
        self.send_response(503 if chat else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize(
    ("api", "error"),
    [
        ("completions", "not a stream (Content-Type application/json)"),
        ("chat", "HTTP 503: overloaded"),
    ],
)
def test_errors_are_counted_and_shown(cli, api, error):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotStreaming)  # GET /v1/models: 501
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, out, err = cli("serve-bench", "--endpoint", url, "--model", "m", "--api", api,
                             "--requests", "3", "--rate", "100", "--json")  # fmt: skip
    finally:
        server.shutdown()
    assert code == 1 and err == f"error: no request was answered ({error})\n"
    (at,) = ServeBench.model_validate_json(out).rates
    assert at.errors == {error: 3} and at.completed == 0 and at.ttft_ms.p50 is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--endpoint", "http://127.0.0.1:{port}"], "http://127.0.0.1:{port} does not answer: "),
        (["--endpoint", "ftp://h", "--rate", "1"], "endpoint must be an http(s) URL"),
        (["--endpoint", "http://h", "--rate", "1", "--rates", "2"], "give --rate or --rates"),
        (["--endpoint", "http://h", "--rates", "1,x"], "rates must be numbers"),
        (["--endpoint", "http://h", "--rates", "0,1"], "every rate must be a positive number"),
        (["--endpoint", "http://h", "--rate", "0"], "every rate must be a positive number"),
    ],
)
def test_bad_input_is_one_line_and_a_failure(cli, args, message):
    port = free_port()  # nothing listens there
    code, out, err = cli("serve-bench", "--model", "m", *(a.format(port=port) for a in args))
    assert code == 1 and out == ""
    assert err.startswith(f"error: {message.format(port=port)}") and err.count("\n") == 1


def test_the_api_key_is_sent_and_a_refused_one_is_one_line(tiny_lm, cli, tmp_path):
    key = tmp_path / "key"
    key.write_text("s3cret\n")
    with _serving(tiny_lm.checkpoint, tmp_path / "log", "--api-key-file", key) as served:
        args = ["serve-bench", "--endpoint", served.url, "--model", "tiny-lm", "--requests", "2"]
        code, out, err = cli(*args, "--output-tokens", "2")
        assert code == 1 and out == ""
        assert err == f"error: {served.url} refused the API key (HTTP 401)\n"
        code, out, err = cli(*args, "--output-tokens", "2", "--api-key-file", str(key), "--json")
    assert code == 0, err
    assert ServeBench.model_validate_json(out).rates[0].completed == 2
