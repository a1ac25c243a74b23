"""serve-bench against the project's own OpenAI-compatible server: tiny_lm trained, served, swept.

.venv/bin/python benchmarks/serve_bench.py [--requests 100] [--rates 5,10,20,40,80]
    [--target-ttft-ms 100] [--input-words 32] [--output-tokens 32] [--seed 0] [--steps 300]

Trains model_images/tiny_lm (a character-level GPT on the Zen of Python, --steps steps on one
CPU thread), serves it on a free port (tiny_lm/serve.py: a thread per request, one torch
thread each) and runs serve-bench's sweep against it; prints the Markdown report.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from deepspark_agent import serving, serving_report

TINY_LM = Path(__file__).resolve().parents[1] / "model_images" / "tiny_lm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--rates", default="5,10,20,40,80")
    parser.add_argument("--target-ttft-ms", type=float, default=100)
    parser.add_argument("--input-words", type=int, default=32)
    parser.add_argument("--output-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    paths = [str(TINY_LM.parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        checkpoint = Path(tmp, "tiny_lm.pt")
        train = [sys.executable, TINY_LM / "train.py", "--out", checkpoint]
        subprocess.run([*train, "--steps", str(args.steps)], env=env, check=True)
        serve = [sys.executable, TINY_LM / "serve.py", "--checkpoint", checkpoint, "--port", "0"]
        server = subprocess.Popen(serve, env=env, stdout=subprocess.PIPE, text=True)
        try:
            url = server.stdout.readline().split()[-1]  # "serving tiny-lm on URL"
            settings = serving.Settings(
                endpoint=url, model="tiny-lm", requests=args.requests,
                rates=serving.parse_rates(args.rates), input_words=args.input_words,
                output_tokens=args.output_tokens, seed=args.seed,
                target_ttft_ms=args.target_ttft_ms,
            )  # fmt: skip
            print(serving_report.markdown(serving.run(settings)))
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
