"""The collector under load: CLIENTS concurrent clients each POST PER_CLIENT distinct bundles.

.venv/bin/python benchmarks/collector_load.py [--db sqlite|postgres] [--workers 1]
    [--clients 50] [--per-client 20] [--workload dlrm]

One collector (uvicorn with N workers through the factory `serve --workers N` uses, prepared
here as `serve` would: SQLite in a temp dir, or a schema of its own on the PostgreSQL server
of .postgres-env, dropped afterwards; its rate limits lifted: one address and one key send
everything), one registered key. The bundles are one real run set (WORKLOAD's mini preset,
2 converge runs, process runtime) and copies whose `plan.json` differs only in `created_at`,
each re-signed: distinct envelopes that are fully verified, recomputed and stored. The
clients are asyncio tasks (one connection each) in this one process, so that the load
generator takes as little of the shared CPU as it can; its share is reported.

Reports submissions/s, latency p50/p95/p99, errors, rows lost (counted in the database), the
server's CPU ms per submission (its processes' user + system time) and the generator's CPU
share. Exits 1 on any error or lost row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import psutil
import sqlalchemy
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deepspark_agent.workloads import WORKLOADS_ENV
from deepspark_collector.app import prepare
from deepspark_collector.settings import WORKER_SETTINGS_ENV, RateLimit, Settings
from deepspark_core.attest import sign_run_set
from deepspark_core.result_bundle import pack_run_set
from deepspark_core.results import PLAN_FILE, RESULT_FILE, Result, RunPlan
from deepspark_core.signing import PUBLIC_KEY_NAME, init_keys, load_private_key

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "load-test-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
TAR = {"Content-Type": "application/x-tar"}


def distinct_bundles(run_set: Path, key: Ed25519PrivateKey, count: int) -> list[bytes]:
    """`count` distinct signed bundles of `run_set` (changed in place): its plan's created_at
    moved by a second each time, the result's plan with it, re-signed by `key`. Each is a
    new statement whose recomputation matches its claim."""
    result = Result.model_validate_json((run_set / RESULT_FILE).read_text())
    plan = json.loads((run_set / PLAN_FILE).read_text())
    start = datetime.fromisoformat(plan["created_at"])
    out: list[bytes] = []
    for i in range(count):
        plan["created_at"] = (start + timedelta(seconds=i)).isoformat()
        (run_set / PLAN_FILE).write_text(json.dumps(plan, indent=2) + "\n")
        claimed = result.model_copy(update={"plan": RunPlan.model_validate(plan)})
        sign_run_set(run_set, claimed, key)
        out.append(pack_run_set(run_set, run_set.parent / "bundle.tar").read_bytes())
    return out


def record_run_set(work: Path, workload: str) -> Path:
    """A real run set of `workload` (2 converge runs), signed by the key under work/config."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(work / "config")}
    env[WORKLOADS_ENV] = str(ROOT / "tests" / "data" / "workloads")  # sleeper, if asked for
    agent = Path(sys.executable).parent / "deepspark-agent"
    subprocess.run(
        [agent, "run", workload, "--runtime", "process", "--mode", "converge", "--runs", "2",
         "--out", str(work / "runs"), "--json"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    (run_set,) = (work / "runs").iterdir()
    return run_set


@contextmanager
def database(kind: str) -> Iterator[str | None]:
    """None (SQLite in the data dir), or a URL of a fresh PostgreSQL schema of our own."""
    if kind == "sqlite":
        yield None
        return
    env = dict(line.split("=", 1) for line in (ROOT / ".postgres-env").read_text().split())
    with postgres_schema(env["DS_TEST_POSTGRES_URL"], "load") as url:
        yield url


@contextmanager
def postgres_schema(base: str, prefix: str) -> Iterator[str]:
    """`base` (a PostgreSQL URL) seeing only a new, empty schema of its own (its search_path),
    dropped afterwards: what a fresh database would be, beside others on one server."""
    schema = f"{prefix}_{uuid.uuid4().hex}"
    admin = sqlalchemy.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def serve(settings: Settings, workers: int, port: int) -> subprocess.Popen[bytes]:
    """uvicorn's workers on the factory `serve` uses, after `prepare` here (as `serve` does)."""
    prepare(settings)
    env = {**os.environ, WORKER_SETTINGS_ENV: settings.for_workers()}
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "deepspark_collector.app:worker_app",
         "--port", str(port), "--workers", str(workers), "--log-level", "warning"],
        env=env,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def await_up(server: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{url}/results", timeout=1)
            return
        except httpx.TransportError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the collector did not start") from None
            time.sleep(0.2)


def register(api: str, pem: str, vendor: str) -> None:
    """The vendor and its signing key, through the admin API at `api`."""
    httpx.post(f"{api}/vendors", json={"name": vendor}, headers=ADMIN).raise_for_status()
    key = {"vendor": vendor, "public_key_pem": pem}
    httpx.post(f"{api}/keys", json=key, headers=ADMIN).raise_for_status()


def cpu_seconds(server: subprocess.Popen[bytes]) -> float:
    """User + system time of the server and its worker processes so far."""
    parent = psutil.Process(server.pid)
    total = 0.0
    for process in [parent, *parent.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def run_clients(
    url: str, bodies: list[bytes], clients: int, per_client: int
) -> tuple[list[float], list[str], float]:
    """Each client its own connection and slice of the bundles: latencies of the 201s, the
    other answers, the wall time."""
    ok: list[float] = []
    errors: list[str] = []

    async def client(mine: list[bytes]) -> None:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(timeout=300, limits=limits) as http:
            for body in mine:
                start = time.perf_counter()
                try:
                    answer = await http.post(f"{url}/submissions", content=body, headers=TAR)
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                if answer.status_code == 201:
                    ok.append(time.perf_counter() - start)
                else:
                    errors.append(f"HTTP {answer.status_code}: {answer.text[:200]}")

    slices = [bodies[i * per_client : (i + 1) * per_client] for i in range(clients)]
    t0 = time.perf_counter()
    await asyncio.gather(*(client(mine) for mine in slices))
    return ok, errors, time.perf_counter() - t0


def stored_rows(url: str) -> int:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text("SELECT count(*) FROM submissions")).scalar_one()
    finally:
        engine.dispose()


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[int(fraction * (len(sorted_values) - 1))] if sorted_values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--per-client", type=int, default=20)
    parser.add_argument("--workload", default="dlrm", help="its mini preset is recorded once")
    args = parser.parse_args()
    total = args.clients * args.per_client

    with tempfile.TemporaryDirectory(prefix="collector-load-") as tmp, database(args.db) as db:
        work = Path(tmp)
        init_keys(work / "config" / "deepspark")
        t0 = time.perf_counter()
        run_set = record_run_set(work, args.workload)
        bodies = distinct_bundles(run_set, load_private_key(work / "config" / "deepspark"), total)
        print(f"{args.workload}: {total} signed bundles of {len(bodies[0]) // 1024} KiB "
              f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        limits = RateLimit(burst=10**9, per_minute=1e12)
        settings = Settings(
            data_dir=work / "collector", db_url=db, admin_token=TOKEN, rate_limit=limits
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}/api/v1"
        server = serve(settings, args.workers, port)
        try:
            await_up(server, url)
            register(url, (work / "config" / "deepspark" / PUBLIC_KEY_NAME).read_text(), "load")
            server_cpu, own_cpu = cpu_seconds(server), time.process_time()
            ok, errors, wall = asyncio.run(run_clients(url, bodies, args.clients, args.per_client))
            server_cpu, own_cpu = cpu_seconds(server) - server_cpu, time.process_time() - own_cpu
            stored = stored_rows(settings.database_url)
        finally:
            server.terminate()
            server.wait(timeout=30)

    lat = sorted(ok)
    print(
        f"{args.db}, {args.workers} worker(s): {args.clients} clients x {args.per_client} = "
        f"{total} submissions in {wall:.1f} s"
    )
    print(f"errors: {len(errors)}  lost: {total - stored} (stored {stored})")
    for line in errors[:5]:
        print(f"  {line}")
    print(f"throughput: {total / wall:.1f} submissions/s")
    ms = [percentile(lat, f) * 1e3 for f in (0.5, 0.95, 0.99)]
    print(f"latency: p50 {ms[0]:.0f} ms, p95 {ms[1]:.0f} ms, p99 {ms[2]:.0f} ms")
    print(
        f"server CPU: {server_cpu / total * 1e3:.1f} ms per submission; load generator: "
        f"{own_cpu / total * 1e3:.1f} ms per submission, {own_cpu / wall:.0%} of one core"
    )
    if errors or stored != total:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
