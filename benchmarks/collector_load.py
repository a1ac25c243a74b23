"""The collector under load: CLIENTS concurrent clients each POST PER_CLIENT distinct bundles.

.venv/bin/python benchmarks/collector_load.py [--clients 50] [--per-client 20]

One collector (uvicorn subprocess, SQLite in a temp dir, its per-key rate limit lifted: one
key sends everything), one registered key. The bundles are one real sleeper run set and
copies whose `plan.json` differs only in `created_at`, each re-signed: distinct envelopes
whose recomputed figures still match their claim, so every one is fully verified and stored.
Reports errors, lost submissions (rows counted through the read API), throughput, latency.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI

from deepspark_agent.workloads import WORKLOADS_ENV
from deepspark_collector.app import create_app
from deepspark_collector.settings import RateLimit, Settings
from deepspark_core.attest import sign_run_set
from deepspark_core.result_bundle import pack_run_set
from deepspark_core.results import PLAN_FILE, RESULT_FILE, Result
from deepspark_core.signing import PUBLIC_KEY_NAME, init_keys, load_private_key

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "load-test-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def make_app() -> FastAPI:
    """uvicorn's factory: the collector from the environment, without the per-key limit."""
    return create_app(Settings.from_env(rate_limit=RateLimit(burst=10**9, per_minute=1e12)))


def bundles(work: Path, count: int) -> list[bytes]:
    """`count` distinct signed bundles of one real sleeper run set."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(work / "config")}
    env[WORKLOADS_ENV] = str(ROOT / "tests" / "data" / "workloads")
    agent = Path(sys.executable).parent / "deepspark-agent"
    subprocess.run(
        [agent, "run", "sleeper", "--runtime", "process", "--mode", "converge", "--runs", "2",
         "--out", str(work / "runs"), "--json"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    (run_set,) = (work / "runs").iterdir()
    key = load_private_key(work / "config" / "deepspark")
    result = Result.model_validate_json((run_set / RESULT_FILE).read_text())
    plan = json.loads((run_set / PLAN_FILE).read_text())
    start = datetime.fromisoformat(plan["created_at"])
    out: list[bytes] = []
    for i in range(count):
        plan["created_at"] = (start + timedelta(seconds=i)).isoformat()
        (run_set / PLAN_FILE).write_text(json.dumps(plan, indent=2) + "\n")
        sign_run_set(run_set, result, key)  # only the dimensions must match the recomputation
        out.append(pack_run_set(run_set, work / "bundle.tar").read_bytes())
    return out


def serve(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "DEEPSPARK_COLLECTOR_DATA_DIR": str(work / "collector"),
        "DEEPSPARK_COLLECTOR_ADMIN_TOKEN": TOKEN,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "collector_load:make_app",
         "--app-dir", str(Path(__file__).parent), "--port", str(port), "--log-level", "warning"],
        env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api/v1"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{url}/results", timeout=1)
            return server, url
        except httpx.TransportError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the collector did not start") from None
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--per-client", type=int, default=20)
    args = parser.parse_args()
    total = args.clients * args.per_client

    with tempfile.TemporaryDirectory(prefix="collector-load-") as tmp:
        work = Path(tmp)
        init_keys(work / "config" / "deepspark")
        t0 = time.perf_counter()
        bodies = bundles(work, total)
        print(f"prepared {total} signed bundles in {time.perf_counter() - t0:.1f} s")
        server, url = serve(work)
        try:
            pem = (work / "config" / "deepspark" / PUBLIC_KEY_NAME).read_text()
            httpx.post(f"{url}/vendors", json={"name": "load"}, headers=ADMIN).raise_for_status()
            key = {"vendor": "load", "public_key_pem": pem}
            httpx.post(f"{url}/keys", json=key, headers=ADMIN).raise_for_status()
            latencies, errors = run_clients(url, bodies, args.clients, args.per_client)
            stored = count_results(f"{url}/results")
        finally:
            server.terminate()
            server.wait(timeout=30)
    wall = latencies.pop("wall")[0]
    lat = sorted(latencies["ok"])
    p95 = lat[int(0.95 * (len(lat) - 1))] if lat else float("nan")
    print(f"{args.clients} clients x {args.per_client} = {total} submissions in {wall:.1f} s")
    print(f"errors: {len(errors)}  lost: {total - stored} (stored {stored})")
    for line in errors[:5]:
        print(f"  {line}")
    print(f"throughput: {total / wall:.1f} submissions/s")
    if lat:
        print(
            f"latency: median {statistics.median(lat) * 1e3:.0f} ms, "
            f"p95 {p95 * 1e3:.0f} ms, max {lat[-1] * 1e3:.0f} ms"
        )
    if errors or stored != total:
        raise SystemExit(1)


def count_results(url: str) -> int:
    """The results stored, page after page (the read API's `Link: rel="next"`)."""
    count = 0
    params: dict[str, int] | None = {"limit": 1000}
    while url:
        answer = httpx.get(url, params=params, timeout=60)
        count += len(answer.json())
        url, params = answer.links.get("next", {}).get("url"), None
    return count


def run_clients(
    url: str, bodies: list[bytes], clients: int, per_client: int
) -> tuple[dict[str, list[float]], list[str]]:
    """Each client its own connection and its own slice of the bundles."""
    ok: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        mine = bodies[index * per_client : (index + 1) * per_client]
        with httpx.Client(timeout=300) as http:
            barrier.wait()
            for body in mine:
                start = time.perf_counter()
                try:
                    answer = http.post(
                        f"{url}/submissions",
                        content=body,
                        headers={"Content-Type": "application/x-tar"},
                    )
                    problem = None if answer.status_code == 201 else answer.text[:200]
                    status = answer.status_code
                except httpx.HTTPError as exc:
                    problem, status = repr(exc), 0
                elapsed = time.perf_counter() - start
                with lock:
                    if problem is None:
                        ok.append(elapsed)
                    else:
                        errors.append(f"HTTP {status}: {problem}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    return {"ok": ok, "wall": [time.perf_counter() - t0]}, errors


if __name__ == "__main__":
    main()
