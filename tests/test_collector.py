"""The collector end to end: real signed run sets, a real SQLite file, FastAPI's TestClient."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, text

from conftest import ADMIN, TOKEN, ServedCollector
from deepspark_collector import db
from deepspark_collector.app import create_app
from deepspark_collector.ratelimit import RateLimiter
from deepspark_collector.settings import RateLimit, Settings
from deepspark_core.attest import STATEMENT_FILE, sign_run_set
from deepspark_core.receipts import verify_receipt
from deepspark_core.result_bundle import pack_run_set
from deepspark_core.results import Result
from deepspark_core.signing import PUBLIC_KEY_NAME, default_key_dir, load_private_key

TAR = {"Content-Type": "application/x-tar"}
HEAD = ScriptDirectory.from_config(db.alembic_config("sqlite://")).get_current_head()


def settings(tmp_path: Path, **kw) -> Settings:
    return Settings(data_dir=tmp_path / "collector", admin_token=TOKEN, **kw)


def rows(s: Settings) -> int:
    with create_engine(s.database_url).connect() as conn:
        return conn.execute(text("SELECT count(*) FROM submissions")).scalar_one()


def register(client: TestClient, vendor: str = "acme") -> str:
    assert client.post("/api/v1/vendors", json={"name": vendor}, headers=ADMIN).status_code == 201
    pem = (default_key_dir() / PUBLIC_KEY_NAME).read_text()
    answer = client.post(
        "/api/v1/keys", json={"vendor": vendor, "public_key_pem": pem}, headers=ADMIN
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["key_id"]


@pytest.fixture
def collector(tmp_path):
    s = settings(tmp_path)
    with TestClient(create_app(s)) as client:
        yield s, client


def submit(client: TestClient, body: bytes) -> httpx.Response:
    return client.post("/api/v1/submissions", content=body, headers=TAR)


def retar(body: bytes, change) -> bytes:
    """The bundle with `change(name, data) -> data` applied to each member."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(body)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src.getmembers():
            data = change(member.name, src.extractfile(member).read())
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return out.getvalue()


def test_a_fresh_database_gets_its_schema_through_alembic(tmp_path):
    s = settings(tmp_path)
    create_app(s)
    tables = set(inspect(create_engine(s.database_url)).get_table_names())
    assert {"vendors", "keys", "submissions", "standings", "alembic_version"} <= tables
    with create_engine(s.database_url).connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == HEAD


def test_the_migrations_keep_older_submissions_and_rank_them(tmp_path, signed):
    """A database at 0001 with two submissions: 0002 adds implements (the workload's own name
    for older rows) and framework (unrecorded) and loses nothing; 0006 fills the standings
    from them: one group (implementation and framework unrecorded), both counted, the better
    accuracy its best."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = db.make_engine(url)
    config = db.alembic_config(url)
    result_json = signed[1].model_dump_json()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(text("INSERT INTO vendors (id, name) VALUES (1, 'acme')"))
        conn.execute(
            text("INSERT INTO keys (key_id, vendor_id, public_key_pem) VALUES ('k', 1, 'pem')")
        )
        for envelope, accuracy in (("e1", 0.6), ("e2", 0.9)):
            conn.execute(
                text(
                    "INSERT INTO submissions (envelope_sha256, key_id, model, config, mode, "
                    "nproc, platform, speed, accuracy, result_json, received_at) VALUES (:e, "
                    "'k', 'resnet50', 'mini', 'converge', 1, 'cpu: x', 12.5, :a, :r, "
                    "'2026-11-28 00:00:00')"
                ),
                {"e": envelope, "a": accuracy, "r": result_json},
            )
    db.migrate(engine)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT model, implements, framework, speed FROM submissions"))
        assert row.all() == [("resnet50", "resnet50", None, 12.5)] * 2
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == HEAD
        standing = conn.execute(
            text(
                "SELECT implementation, framework, kind, results, best_id, best_score "
                "FROM standings"
            )
        )
        assert standing.all() == [("", "", "converge", 2, 2, 0.9)]


def test_submit_verifies_stores_recomputed_figures_and_signs_a_receipt(collector, bundle, run_set):
    s, client = collector
    kid = register(client)
    answer = submit(client, bundle)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    key = client.get("/api/v1/collector-key").json()
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    receipt = verify_receipt(body["receipt"], load_pem_public_key(key["public_key_pem"].encode()))
    assert receipt["submission_id"] == body["submission_id"]
    assert receipt["envelope_sha256"] == body["envelope_sha256"]
    stored = client.get(f"/api/v1/results/{body['submission_id']}").json()
    assert stored["key_id"] == kid and stored["vendor"] == "acme" and stored["model"] == "sleeper"
    claimed = Result.model_validate_json((run_set / "result.json").read_text())
    assert stored["speed"] == claimed.dimensions.speed.value
    assert Result.model_validate(stored["result"]).dimensions == claimed.dimensions

    again = submit(client, bundle)  # idempotent
    assert again.status_code == 200 and again.json()["submission_id"] == body["submission_id"]
    assert rows(s) == 1


def test_unknown_key_is_refused(collector, bundle):
    s, client = collector
    answer = submit(client, bundle)
    assert answer.status_code == 401 and "unknown signing key" in answer.json()["detail"]
    assert rows(s) == 0


def test_revoked_key_is_refused(collector, bundle):
    s, client = collector
    kid = register(client)
    assert client.post(f"/api/v1/keys/{kid}/revoke", headers=ADMIN).status_code == 200
    answer = submit(client, bundle)
    assert answer.status_code == 403 and "revoked" in answer.json()["detail"]
    assert rows(s) == 0


def test_bad_signature_is_refused(collector, bundle):
    s, client = collector
    register(client)

    def flip(name: str, data: bytes) -> bytes:
        if name != STATEMENT_FILE:
            return data
        envelope = json.loads(data)
        sig = envelope["signatures"][0]["sig"]
        envelope["signatures"][0]["sig"] = ("B" if sig[0] == "A" else "A") + sig[1:]
        return json.dumps(envelope).encode()

    answer = submit(client, retar(bundle, flip))
    assert answer.status_code == 401 and "bad signature" in answer.json()["detail"]
    assert rows(s) == 0


def test_an_artifact_that_does_not_match_its_digest_is_refused(collector, bundle):
    s, client = collector
    register(client)

    def tamper(name: str, data: bytes) -> bytes:
        return data + b"\n" if name == "run-2/mllog.log" else data

    answer = submit(client, retar(bundle, tamper))
    assert answer.status_code == 422 and "artifact mismatch" in answer.json()["detail"]
    assert "run-2/mllog.log" in answer.json()["detail"]
    assert rows(s) == 0


def test_an_unsigned_extra_file_or_a_missing_signed_one_is_refused(collector, bundle):
    """The digests the extraction computed stand for the files: one more, or one fewer,
    than the statement signs is refused as a changed byte is."""
    s, client = collector
    register(client)
    with tarfile.open(fileobj=io.BytesIO(bundle)) as src:
        members = [(m, src.extractfile(m).read()) for m in src.getmembers()]
    extra = tarfile.TarInfo("run-1/extra.txt")
    for hostile, detail in (
        ([*members, (extra, b"x")], "unsigned files beside the signed artifacts: run-1/extra.txt"),
        ([(m, d) for m, d in members if m.name != "run-2/mllog.log"], "'run-2/mllog.log': missing"),
    ):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as dst:
            for member, data in hostile:
                member.size = len(data)
                dst.addfile(member, io.BytesIO(data))
        answer = submit(client, out.getvalue())
        assert answer.status_code == 422 and detail in answer.json()["detail"], answer.text
    assert rows(s) == 0


def test_claimed_figures_that_differ_are_refused(collector, run_set, tmp_path):
    s, client = collector
    register(client)
    claim = Result.model_validate_json((run_set / "result.json").read_text()).model_dump(
        mode="json"
    )
    claim["dimensions"]["speed"]["value"] *= 2
    sign_run_set(run_set, Result.model_validate(claim), load_private_key())
    answer = submit(client, pack_run_set(run_set, tmp_path / "inflated.tar").read_bytes())
    assert answer.status_code == 422
    assert "differs from its recomputation at result.dimensions.speed" in answer.json()["detail"]
    assert rows(s) == 0


@pytest.mark.parametrize("body", [b"", b"this is not a tar archive" * 40])
def test_malformed_bodies_are_refused(collector, body):
    s, client = collector
    answer = submit(client, body)
    assert answer.status_code == 400 and answer.json()["detail"]
    assert rows(s) == 0


def test_an_oversized_body_is_refused(tmp_path, bundle):
    s = settings(tmp_path, max_body=1024)
    with TestClient(create_app(s)) as client:
        register(client)
        answer = submit(client, bundle)
        assert answer.status_code == 413 and "at most 1024 bytes" in answer.json()["detail"]
        # Streamed without a Content-Length: refused while it streams.
        chunks = (bundle[i : i + 512] for i in range(0, len(bundle), 512))
        answer = client.post("/api/v1/submissions", content=chunks, headers=TAR)
        assert answer.status_code == 413
    assert rows(s) == 0


def test_the_rate_limit_answers_429_with_retry_after(tmp_path, bundle):
    s = settings(tmp_path, rate_limit=RateLimit(burst=2, per_minute=2))
    with TestClient(create_app(s)) as client:
        register(client)
        answers = [submit(client, bundle) for _ in range(3)]
        assert [a.status_code for a in answers] == [201, 200, 429]
        # One token back at 2 a minute: at most 30 s, less the refill since the first.
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 30
        assert "Retry-After" not in answers[0].headers


def test_retry_after_is_the_time_until_a_token_is_back():
    now = [0.0]
    limiter = RateLimiter(burst=1, per_minute=6, clock=lambda: now[0])  # a token per 10 s
    assert limiter.allow("a") and not limiter.allow("a")
    assert limiter.retry_after("a") == 10
    now[0] = 7.5
    assert not limiter.allow("a") and limiter.retry_after("a") == 3  # 2.5 s, rounded up
    assert limiter.retry_after("never seen") == 1


def test_has_token_looks_at_a_bucket_without_taking_from_it():
    now = [0.0]
    limiter = RateLimiter(burst=1, per_minute=6, clock=lambda: now[0])  # a token per 10 s
    assert limiter.has_token("a") and limiter.has_token("a")  # looking takes nothing
    assert limiter.allow("a") and not limiter.has_token("a")
    now[0] = 10.0
    assert limiter.has_token("a") and limiter.allow("a")


def test_forged_bundles_naming_a_key_do_not_use_up_its_budget(tmp_path, bundle):
    """The limit before verification is the sender's address; the key's, only once verified."""

    def flip(name: str, data: bytes) -> bytes:
        return data.replace(b'"sig": "', b'"sig": "AA') if name == STATEMENT_FILE else data

    s = settings(tmp_path, rate_limit=RateLimit(burst=2, per_minute=0.001))
    app = create_app(s)
    with (
        TestClient(app, client=("192.0.2.66", 1)) as forger,
        TestClient(app, client=("192.0.2.10", 1)) as vendor,
    ):
        register(vendor)
        forged = retar(bundle, flip)
        assert [submit(forger, forged).status_code for _ in range(3)] == [401, 401, 429]
        assert submit(vendor, bundle).status_code == 201
    assert rows(s) == 1


def test_admin_needs_the_token(collector):
    _, client = collector
    assert client.post("/api/v1/vendors", json={"name": "x"}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.post("/api/v1/vendors", json={"name": "x"}, headers=wrong).status_code == 401


def test_read_api_filters_and_compare(collector, bundle):
    _, client = collector
    register(client)
    sid = submit(client, bundle).json()["submission_id"]
    (row,) = client.get("/api/v1/results", params={"model": "sleeper"}).json()
    assert row["id"] == sid
    for name, value in (("vendor", "acme"), ("device", row["platform"]), ("config", row["config"])):
        assert [r["id"] for r in client.get("/api/v1/results", params={name: value}).json()] == [
            sid
        ]
    assert client.get("/api/v1/results", params={"model": "resnet50"}).json() == []
    assert client.get("/api/v1/results", params={"vendor": "other"}).json() == []
    compared = client.get("/api/v1/compare", params={"model": "sleeper"}).json()
    assert [p["platform"] for p in compared["platforms"]] == [row["platform"]]
    assert client.get("/api/v1/results/999").status_code == 404


def test_serve_runs_uvicorn_and_accepts_a_submission_over_http(bundle, tmp_path):
    served = ServedCollector(tmp_path / "served").start()
    try:
        served.register()
        answer = httpx.post(
            f"{served.url}/api/v1/submissions", content=bundle, headers=TAR, timeout=60
        )
        assert answer.status_code == 201, answer.text
        assert (served.data / "collector.sqlite3").is_file()
    finally:
        served.stop()


# --- PostgreSQL by URL ---------------------------------------------------------------------


def test_postgres_gets_the_schema_and_keeps_one_row_per_envelope(postgres_url, bundle, tmp_path):
    s = Settings(data_dir=tmp_path / "collector", db_url=postgres_url, admin_token=TOKEN)
    with TestClient(create_app(s)) as client:
        tables = set(inspect(create_engine(postgres_url)).get_table_names())
        assert {"vendors", "keys", "submissions", "standings", "alembic_version"} <= tables
        register(client)
        first = submit(client, bundle)
        assert first.status_code == 201, first.text
        again = submit(client, bundle)
        assert again.status_code == 200
        assert again.json()["submission_id"] == first.json()["submission_id"]

        # Re-encoded, the same statement is the same submission (the payload-key index).
        def spaced(name: str, data: bytes) -> bytes:
            if name != STATEMENT_FILE:
                return data
            return json.dumps(json.loads(data), indent=5).encode()

        replay = submit(client, retar(bundle, spaced))
        assert replay.status_code == 200 and replay.json()["created"] is False
        assert replay.json()["submission_id"] == first.json()["submission_id"]
        (listed,) = client.get("/api/v1/results", params={"model": "sleeper"}).json()
        assert listed["id"] == first.json()["submission_id"]


def test_a_result_keeps_its_verified_artifacts_for_download(collector, bundle, run_set):
    _, client = collector
    register(client)
    sid = submit(client, bundle).json()["submission_id"]
    names = {a["name"] for a in client.get(f"/api/v1/results/{sid}/artifacts").json()}
    assert {STATEMENT_FILE, "plan.json", "run-1/mllog.log", "run-1/telemetry.jsonl"} <= names
    got = client.get(f"/api/v1/results/{sid}/artifacts/run-1/mllog.log")
    assert got.status_code == 200
    assert got.content == (run_set / "run-1" / "mllog.log").read_bytes()
    # A download, never a page of ours: not rendered, not sniffed.
    assert got.headers["content-disposition"] == 'attachment; filename="mllog.log"'
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert client.get(f"/api/v1/results/{sid}/artifacts/../../etc/passwd").status_code == 404
    assert client.get(f"/api/v1/results/{sid}/artifacts/nope").status_code == 404


def test_the_collector_loads_none_of_the_agents_dependencies() -> None:
    """The collector stands on the core alone: importing its app brings in neither the Docker
    SDK, NVML, psutil nor rich (import-linter checks the imports themselves; this checks what
    actually loads, third-party packages' own imports included)."""
    code = (
        "import sys, deepspark_collector.app\n"
        "loaded = sorted({'docker', 'pynvml', 'psutil', 'rich', 'deepspark_agent'}"
        " & set(sys.modules))\n"
        "sys.exit(f'loaded {loaded}' if loaded else 0)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
