"""The LLM serving benchmark (`serve-bench`): seeded prompts and Poisson arrivals sent to an
OpenAI-compatible endpoint, each answer streamed (SSE) and timed; per offered rate the
percentiles of time to first token (TTFT), time per output token (TPOT) and latency, the
requests/s and output tokens/s achieved; over several rates, the highest whose p90 TTFT meets a
target with every request answered."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import statistics
import time
from typing import Any, Literal

import httpx
from pydantic import BaseModel

from deepspark_core.errors import DeepSparkError

SCHEMA = "deepspark.serve-bench/v1"
# The prompts' words: a fixed list, so that a seed names the same prompts on any host and
# server (the server's tokenizer decides how many tokens they are: its usage says).
_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there would their we him been has when who will more no "
    "if out so said what up its about into than them can only other new some could time these "
    "two may then do first any my now such like our over man me even most made after also did "
    "many before must through back years where much your way well down should because each "
    "just those people how too little state good very make world still own see men work long "
    "get here between both life being under never day same another know while last might us "
    "great old year off come since against go came right used take three"
)
VOCABULARY = tuple(_WORDS.split())
REQUEST_TIMEOUT_S = 300.0
Api = Literal["completions", "chat"]


class ServeBenchError(DeepSparkError):
    """An endpoint that cannot be benchmarked (down, the model not served), or bad settings."""


class Settings(BaseModel):
    endpoint: str  # the server's base URL, without /v1
    model: str
    api: Api = "completions"
    requests: int = 100
    rates: list[float] = [4.0]  # offered requests/s, each a Poisson process
    concurrency: int | None = None  # requests in flight at most; None: no cap
    input_words: int = 64
    output_tokens: int = 64
    seed: int = 0
    target_ttft_ms: float | None = None


class Request(BaseModel):
    """One request of the seeded workload."""

    prompt: str
    at_s: float  # its arrival, seconds after the first's


class Sent(BaseModel):
    """One request as measured: times from when it was sent, in ms; tokens as the server
    counted them (its usage) when it says, else the streamed chunks that carried text."""

    index: int
    at_s: float
    sent_s: float  # when it was sent, after the rate's start (later than at_s when capped)
    done_s: float = 0.0  # when its answer ended (or failed)
    ttft_ms: float | None = None
    tpot_ms: float | None = None  # over the tokens after the first
    latency_ms: float | None = None
    chunks: int = 0
    output_tokens: int | None = None
    tokens_from: Literal["usage", "chunks"] | None = None
    prompt_tokens: int | None = None
    error: str | None = None


class Percentiles(BaseModel):
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None


class AtRate(BaseModel):
    rate: float
    completed: int
    errors: dict[str, int]  # error message -> requests
    duration_s: float  # from the first request sent to the last answer's end
    request_rate: float  # requests answered per second
    output_token_rate: float
    ttft_ms: Percentiles
    tpot_ms: Percentiles
    latency_ms: Percentiles
    requests: list[Sent]


class ServeBench(BaseModel):
    schema_version: Literal["deepspark.serve-bench/v1"] = SCHEMA
    settings: Settings
    rates: list[AtRate]
    rate_at_target: float | None
    rate_at_target_note: str


def base_url(endpoint: str) -> str:
    """The server's base URL: http(s), without a trailing /v1 (the requests add it)."""
    url = endpoint.strip().rstrip("/").removesuffix("/v1")
    if httpx.URL(url).scheme not in ("http", "https") or not httpx.URL(url).host:
        raise ServeBenchError(f"endpoint must be an http(s) URL, not {endpoint!r}")
    return url


def parse_rates(text: str) -> list[float]:
    try:
        rates = [float(r) for r in text.split(",")]
    except ValueError:
        raise ServeBenchError(f"rates must be numbers separated by commas, not {text!r}") from None
    if not all(0 < r < float("inf") for r in rates):
        raise ServeBenchError(f"every rate must be a positive number of requests/s: {text!r}")
    return sorted(set(rates))


def workload(seed: int, requests: int, input_words: int, rate: float) -> list[Request]:
    """The seed's prompts and arrivals: the gaps are unit exponentials scaled by 1/rate, so
    every rate of a sweep sends the same prompts in the same pattern, faster or slower."""
    rng = random.Random(seed)
    prompts = [" ".join(rng.choices(VOCABULARY, k=input_words)) for _ in range(requests)]
    gaps = [rng.expovariate(1.0) for _ in range(requests - 1)]
    arrivals = itertools.accumulate(gaps, initial=0.0)
    return [Request(prompt=p, at_s=a / rate) for p, a in zip(prompts, arrivals, strict=True)]


def percentiles(values: list[float]) -> Percentiles:
    """p50, p90, p99 by linear interpolation between the closest ranks (numpy's default)."""
    if len(values) < 2:
        return Percentiles(p50=values[0], p90=values[0], p99=values[0]) if values else Percentiles()
    q = statistics.quantiles(values, n=100, method="inclusive")
    return Percentiles(p50=q[49], p90=q[89], p99=q[98])


def summarize(rate: float, sent: list[Sent], duration_s: float) -> AtRate:
    done = [s for s in sent if s.error is None]
    errors: dict[str, int] = {}
    for s in sent:
        if s.error is not None:
            errors[s.error] = errors.get(s.error, 0) + 1
    return AtRate(
        rate=rate,
        completed=len(done),
        errors=errors,
        duration_s=duration_s,
        request_rate=len(done) / duration_s,
        output_token_rate=sum(s.output_tokens or 0 for s in done) / duration_s,
        ttft_ms=percentiles([s.ttft_ms for s in done if s.ttft_ms is not None]),
        tpot_ms=percentiles([s.tpot_ms for s in done if s.tpot_ms is not None]),
        latency_ms=percentiles([s.latency_ms for s in done if s.latency_ms is not None]),
        requests=sent,
    )


def rate_at_target(rates: list[AtRate], target_ms: float | None) -> tuple[float | None, str]:
    """The highest offered rate whose p90 TTFT is at most the target, every request answered."""
    if target_ms is None:
        return None, "no target TTFT given"
    rule = f"p90 TTFT <= {target_ms:g} ms, every request answered"
    # no error: every request was answered, so p90 is a figure
    met = [at.rate for at in rates if not at.errors and (at.ttft_ms.p90 or 0) <= target_ms]
    if not met:
        return None, f"no rate met {rule}"
    return max(met), f"the highest of {len(rates)} rates with {rule}"


def run(settings: Settings, api_key: str | None = None) -> ServeBench:
    """Check the endpoint serves the model, then measure each rate in turn."""
    return asyncio.run(_run(settings, api_key))


async def _run(settings: Settings, api_key: str | None) -> ServeBench:
    async with httpx.AsyncClient(
        base_url=settings.endpoint,
        headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
        timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=10.0),
        limits=httpx.Limits(max_connections=settings.concurrency),  # no cap of the client's
    ) as client:
        await _check(client, settings)
        measured = [await _at_rate(client, settings, rate) for rate in settings.rates]
    best, note = rate_at_target(measured, settings.target_ttft_ms)
    return ServeBench(settings=settings, rates=measured, rate_at_target=best,
                      rate_at_target_note=note)  # fmt: skip


async def _check(client: httpx.AsyncClient, settings: Settings) -> None:
    """A dead endpoint, a refused key or a model not listed stop here, in one line."""
    try:
        answer = await client.get("/v1/models")
    except httpx.HTTPError as exc:
        raise ServeBenchError(f"{settings.endpoint} does not answer: {_describe(exc)}") from None
    if answer.status_code in (401, 403):
        status = answer.status_code
        raise ServeBenchError(f"{settings.endpoint} refused the API key (HTTP {status})")
    if answer.status_code != 200:
        return  # a server without the list: the requests will tell
    try:
        served = [m["id"] for m in answer.json()["data"]]
    except (ValueError, KeyError, TypeError):
        return
    if settings.model not in served:
        listed = f"it serves {', '.join(served)}" if served else "it serves no model"
        raise ServeBenchError(f"{settings.endpoint} does not serve {settings.model!r}: {listed}")


async def _at_rate(client: httpx.AsyncClient, settings: Settings, rate: float) -> AtRate:
    requests = workload(settings.seed, settings.requests, settings.input_words, rate)
    gate = asyncio.Semaphore(settings.concurrency or settings.requests)
    start = time.perf_counter()
    sent = await asyncio.gather(
        *(_send(client, settings, i, r, start, gate) for i, r in enumerate(requests))
    )
    duration = max(s.done_s for s in sent) - min(s.sent_s for s in sent)
    return summarize(rate, list(sent), max(duration, 1e-9))


async def _send(
    client: httpx.AsyncClient,
    settings: Settings,
    index: int,
    request: Request,
    start: float,
    gate: asyncio.Semaphore,
) -> Sent:
    await asyncio.sleep(max(0.0, start + request.at_s - time.perf_counter()))
    async with gate:
        begin = time.perf_counter()
        sent = Sent(index=index, at_s=request.at_s, sent_s=begin - start)
        stream = _Stream(settings.api)
        try:
            body = _body(settings, request)
            async with client.stream("POST", _path(settings.api), json=body) as answer:
                await stream.read(answer)
        except httpx.HTTPError as exc:
            stream.error = _describe(exc)
        end = time.perf_counter()
    return stream.measure(sent.model_copy(update={"done_s": end - start}), begin, end)


def _path(api: Api) -> str:
    return "/v1/chat/completions" if api == "chat" else "/v1/completions"


def _body(settings: Settings, request: Request) -> dict[str, Any]:
    """Greedy, exactly output_tokens long: vLLM's ignore_eos keeps an end token from cutting
    the answer short; usage in the stream's last chunk, where the server supports it."""
    body: dict[str, Any] = {
        "model": settings.model,
        "max_tokens": settings.output_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }
    if settings.api == "chat":
        body["messages"] = [{"role": "user", "content": request.prompt}]
    else:
        body["prompt"] = request.prompt
    return body


class _Stream:
    """One answer read: when each chunk with text came, the usage, or what went wrong."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.times: list[float] = []
        self.usage: dict[str, Any] = {}
        self.error: str | None = None

    async def read(self, answer: httpx.Response) -> None:
        if answer.status_code != 200:
            await answer.aread()
            self.error = f"HTTP {answer.status_code}: {_message(answer)}"
            return
        kind = answer.headers.get("content-type", "")
        if not kind.startswith("text/event-stream"):
            self.error = f"not a stream (Content-Type {kind or 'missing'})"
            return
        async for line in answer.aiter_lines():
            if not line.startswith("data:"):
                continue  # SSE comments, blank lines between events
            data = line.removeprefix("data:").strip()
            if data == "[DONE]":
                return
            try:
                chunk = json.loads(data)
                if chunk.get("error"):
                    self.error = f"error in the stream: {_message_of(chunk)}"
                    return
                text = self._text(chunk)
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                self.error = "a chunk that is not OpenAI's JSON"
                return
            if text:
                self.times.append(time.perf_counter())
            self.usage = chunk.get("usage") or self.usage
        self.error = "the stream ended before [DONE]"

    def _text(self, chunk: dict[str, Any]) -> str:
        if not chunk.get("choices"):
            return ""  # the usage chunk, an error
        choice = chunk["choices"][0]
        if self.api == "chat":
            return (choice.get("delta") or {}).get("content") or ""
        return choice.get("text") or ""

    def measure(self, sent: Sent, begin: float, end: float) -> Sent:
        if self.error is None and not self.times:
            self.error = "no token streamed"
        if self.error is not None:
            return sent.model_copy(update={"error": self.error, "chunks": len(self.times)})
        counted = self.usage.get("completion_tokens")
        tokens = counted or len(self.times)
        ttft, latency = self.times[0] - begin, end - begin
        return sent.model_copy(
            update={
                "ttft_ms": ttft * 1e3,
                "latency_ms": latency * 1e3,
                "tpot_ms": (latency - ttft) / (tokens - 1) * 1e3 if tokens > 1 else None,
                "chunks": len(self.times),
                "output_tokens": tokens,
                "tokens_from": "usage" if counted else "chunks",
                "prompt_tokens": self.usage.get("prompt_tokens"),
            }
        )


def _describe(exc: httpx.HTTPError) -> str:
    """An httpx error in a few words: its class and first line (connection refused, ...)."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _message(answer: httpx.Response) -> str:
    try:
        return _message_of(answer.json())
    except ValueError:
        return answer.text.strip().splitlines()[0][:200] if answer.text.strip() else "no body"


def _message_of(body: Any) -> str:
    """OpenAI's {"error": {"message": ...}} (vLLM's too), else the body, cut to one line."""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else error or body
    return str(message).splitlines()[0][:200] if str(message).strip() else "no message"
