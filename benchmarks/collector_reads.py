"""The collector's reads at scale: RESULTS stored results, then latency of the pages and the API.

.venv/bin/python benchmarks/collector_reads.py [--results 100000] [--db sqlite|postgres]
    [--workers 1] [--requests 100] [--concurrent 20]

A bulk loader inserts RESULTS rows directly into a fresh collector database (SQLite in a temp
dir, or a schema of its own in the PostgreSQL of `.postgres-env`), varied over models,
platforms, vendors, frameworks, presets, divisions and modes, each row's result a real
sleeper run set's `result.json` (speed or converge runs) with its names and speed edited;
then `board.rebuild` fills the standings, as revision 0006 does. A real collector (uvicorn
subprocess) then takes a few real signed submissions through the API, and each read is timed
REQUESTS times, one client after the other: p50/p95/p99 of the leaderboard (each model's
first render, then as kept until the next result arrives), the index,
compare, `/api/v1/results` (first page, a deep page by cursor, a filtered page). Last, a
cheap request (the collector's key) alone, and while CONCURRENT clients load the leaderboard.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from collector_load import TAR, TOKEN, await_up, database, free_port, percentile, register, serve
from sqlalchemy import insert, select

from deepspark_agent.workloads import WORKLOADS_ENV
from deepspark_collector import board, db
from deepspark_collector.settings import Settings
from deepspark_collector.store import encode_cursor
from deepspark_core.result_bundle import pack_run_set
from deepspark_core.results import RESULT_FILE
from deepspark_core.signing import PUBLIC_KEY_NAME, init_keys

ROOT = Path(__file__).resolve().parents[1]
MODELS = [f"model{i:02d}" for i in range(12)]
PLATFORMS = [f"Accelerator {name}" for name in "ABCDEFGH"]
VENDORS = [f"vendor{i}" for i in range(6)]
FRAMEWORKS = ["pytorch", "paddlepaddle"]
CONFIGS = ["mini", "full", "large"]
IMPLEMENTATIONS = ["reference", "vendor", None]
MODES = ["speed", "converge", "speed+converge"]
BATCH = 5000


def run_sets(work: Path) -> dict[str, Path]:
    """A real sleeper run set of each mode, signed with a fresh key under `work`."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(work / "config")}
    env[WORKLOADS_ENV] = str(ROOT / "tests" / "data" / "workloads")
    agent = Path(sys.executable).parent / "deepspark-agent"
    found = {}
    for mode in ("speed", "converge"):
        out = work / "runs" / mode
        subprocess.run(
            [agent, "run", "sleeper", "--runtime", "process", "--mode", mode, "--runs", "2",
             "--out", str(out)],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        (found[mode],) = out.iterdir()
    return found


def bulk_load(url: str, results: dict[str, dict], count: int, seed: int = 17) -> dict[str, float]:
    """`count` rows straight into the database, then the standings: seconds of each."""
    engine = db.make_engine(url)
    db.migrate(engine)
    rng = random.Random(seed)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        # Ids from the database: PostgreSQL's sequence must know them for later vendors.
        conn.execute(insert(db.Vendor), [{"name": v} for v in VENDORS])
        keys = [{"key_id": secrets.token_hex(32), "vendor_id": vid, "public_key_pem": "bulk"}
                for vid in conn.scalars(select(db.Vendor.id))]  # fmt: skip
        conn.execute(insert(db.Key), keys)
        for start in range(0, count, BATCH):
            rows = [_row(rng, results, keys) for _ in range(min(BATCH, count - start))]
            conn.execute(insert(db.Submission), rows)
    loaded = time.perf_counter()
    with engine.begin() as conn:
        groups = board.rebuild(conn)
    engine.dispose()
    return {"insert_s": loaded - t0, "rebuild_s": time.perf_counter() - loaded, "groups": groups}


def _row(rng: random.Random, results: dict[str, dict], keys: list[dict]) -> dict:
    mode = rng.choice(MODES)
    result = json.loads(json.dumps(results["speed" if mode == "speed" else "converge"]))
    model, framework = rng.choice(MODELS), rng.choice(FRAMEWORKS)
    plan = result["plan"]
    plan.update(model=f"{model}_{framework}", implements=model, framework=framework,
                config=rng.choice(CONFIGS))  # fmt: skip
    speed = result["dimensions"]["speed"]
    speed["value"] = round(speed["value"] * rng.uniform(0.5, 2.0), 3)
    accuracy = result["dimensions"].get("accuracy")
    return {
        "envelope_sha256": secrets.token_hex(32),
        "payload_sha256": secrets.token_hex(32),
        "key_id": rng.choice(keys)["key_id"],
        "model": plan["model"],
        "implements": model,
        "framework": framework,
        "implementation": rng.choice(IMPLEMENTATIONS),
        "config": plan["config"],
        "mode": mode,
        "nproc": plan["nproc"],
        "platform": rng.choice(PLATFORMS),
        "speed": speed["value"],
        "accuracy": accuracy["value"] if accuracy else None,
        "result_json": json.dumps(result),
        "received_at": datetime.now(UTC),
    }


def submit_real(api: str, work: Path, sets: dict[str, Path]) -> None:
    """The run sets through the API, signed by a registered key: real submissions on top."""
    register(api, (work / "config" / "deepspark" / PUBLIC_KEY_NAME).read_text(), "bench")
    for mode, run_set in sets.items():
        body = pack_run_set(run_set, work / f"{mode}.tar").read_bytes()
        answer = httpx.post(f"{api}/submissions", content=body, timeout=120, headers=TAR)
        if answer.status_code != 201:
            raise SystemExit(f"a real submission was refused: {answer.text}")


def timed(client: httpx.Client, path: str, times: int) -> list[float]:
    out = []
    for _ in range(times):
        start = time.perf_counter()
        answer = client.get(path)
        out.append(time.perf_counter() - start)
        if answer.status_code != 200:
            raise SystemExit(f"GET {path}: HTTP {answer.status_code} {answer.text[:200]}")
    return out


def percentiles(samples: list[float]) -> str:
    s = sorted(samples)
    p50, p95, p99 = (percentile(s, f) * 1e3 for f in (0.5, 0.95, 0.99))
    return f"p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  p99 {p99:7.1f} ms"


def under_load(base: str, cheap: str, heavy: str, clients: int, times: int) -> list[float]:
    """The cheap request's latencies while `clients` clients request `heavy` without pause."""
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=base, timeout=300) as client:
            while not stop.is_set():
                client.get(heavy)

    threads = [threading.Thread(target=hammer) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # every client has a request in flight
    try:
        with httpx.Client(base_url=base, timeout=300) as client:
            return timed(client, cheap, times)
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=100_000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--requests", type=int, default=100, help="of each read")
    parser.add_argument("--concurrent", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="collector-reads-") as tmp:
        work = Path(tmp)
        init_keys(work / "config" / "deepspark")
        sets = run_sets(work)
        results = {m: json.loads((p / RESULT_FILE).read_text()) for m, p in sets.items()}
        with database(args.db) as db_url:
            settings = Settings(data_dir=work / "collector", db_url=db_url, admin_token=TOKEN)
            load = bulk_load(settings.database_url, results, args.results)
            print(
                f"{args.db}: {args.results} results inserted in {load['insert_s']:.1f} s; "
                f"standings rebuilt in {load['rebuild_s']:.1f} s ({load['groups']} groups)"
            )
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            server = serve(settings, args.workers, port)
            try:
                await_up(server, f"{base}/api/v1")
                submit_real(f"{base}/api/v1", work, sets)
                report(base, args)
            finally:
                server.terminate()
                server.wait(timeout=30)


def report(base: str, args: argparse.Namespace) -> None:
    model, (a, b) = MODELS[0], PLATFORMS[:2]
    leaderboard = f"/models/{model}"
    reads = {
        "leaderboard": leaderboard,
        "index": "/",
        "compare": f"/compare?model={model}&a={a}&b={b}".replace(" ", "%20"),
        "api first page": "/api/v1/results",
        "api deep page": f"/api/v1/results?cursor={encode_cursor(args.results - 150)}",
        "api filtered": f"/api/v1/results?model={model}&device={a.replace(' ', '%20')}",
    }
    with httpx.Client(base_url=base, timeout=300) as client:
        # Each model's first request renders its leaderboard; later ones until the next
        # result are kept pages (web.Pages).
        cold = [timed(client, f"/models/{m}", 1)[0] for m in MODELS]
        print(f"{'leaderboard, first render':15} {percentiles(cold)}  ({len(cold)} models)")
        for name, path in reads.items():
            size = len(client.get(path).content)  # also warms the caches
            samples = timed(client, path, args.requests)
            print(f"{name:15} {percentiles(samples)}  ({size / 1024:.0f} KiB)")
        cheap = "/api/v1/collector-key"
        alone = timed(client, cheap, args.requests)
    loaded = under_load(base, cheap, leaderboard, args.concurrent, args.requests)
    print(f"{'cheap alone':15} {percentiles(alone)}")
    print(f"{'cheap, ' + str(args.concurrent) + ' busy':15} {percentiles(loaded)}")
    delay = (statistics.median(loaded) - statistics.median(alone)) * 1e3
    print(f"delay of a cheap request under {args.concurrent} leaderboard clients: "
          f"median +{delay:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
