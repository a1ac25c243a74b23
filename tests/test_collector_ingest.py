"""The collector's ingestion under concurrency: SQLite in WAL mode, `serve --workers N`
(prepared once in the parent), concurrent submissions, revocation seen by every process."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from collector_load import await_up, distinct_bundles, free_port, serve
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from conftest import ADMIN, TOKEN, ServedCollector, emptied
from deepspark_collector import app as app_module
from deepspark_collector import db, store
from deepspark_collector.app import create_app
from deepspark_collector.settings import RateLimit, Settings
from deepspark_collector.verify import Signed
from deepspark_core.result_bundle import Unpacked
from deepspark_core.results import Result
from deepspark_core.signing import key_id, load_private_key
from test_collector import register

TAR = {"Content-Type": "application/x-tar"}


def post(url: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/submissions", content=body, headers=TAR, timeout=60)


def count_rows(data: Path) -> int:
    with create_engine(f"sqlite:///{data / 'collector.sqlite3'}").connect() as conn:
        return conn.execute(text("SELECT count(*) FROM submissions")).scalar_one()


def test_sqlite_runs_in_wal_mode(tmp_path):
    s = Settings(data_dir=tmp_path / "collector", admin_token=TOKEN)
    with TestClient(create_app(s)), create_engine(s.database_url).connect() as conn:
        # WAL is the database file's own mode: any connection, the app's or not, sees it.
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"


def test_serve_with_two_workers_prepares_once_and_answers(run_set, tmp_path):
    # 10 at once: within one worker's burst per address and key, wherever they land.
    bodies = distinct_bundles(run_set, load_private_key(), 10)
    served = ServedCollector(tmp_path / "served", options=("--workers", "2")).start()
    try:
        served.register()
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda body: post(served.url, body), bodies))
        assert [a.status_code for a in answers] == [201] * len(bodies), {a.text for a in answers}
        assert count_rows(served.data) == len(bodies)
        assert emptied(served.data / "spool")
    finally:
        served.stop()
    log = served.log.read_text()
    assert log.count("prepared, 2 worker(s)") == 1  # migration, key, spool: the parent's
    assert len(set(re.findall(r"Started server process \[(\d+)\]", log))) == 2


def test_sqlite_with_two_workers_stores_every_concurrent_submission(run_set, tmp_path):
    """16 clients x 3 distinct bundles on two workers' writers: all 201, every row stored."""
    bodies = distinct_bundles(run_set, load_private_key(), 48)
    lifted = RateLimit(burst=10**6, per_minute=1e9)
    s = Settings(data_dir=tmp_path / "collector", admin_token=TOKEN, rate_limit=lifted)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = serve(s, 2, port)
    try:
        await_up(server, f"{url}/api/v1")
        with httpx.Client(base_url=url) as admin:
            register(admin)
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda body: post(url, body), bodies))
        assert [a.status_code for a in answers] == [201] * 48, {a.text for a in answers}
        assert count_rows(s.data_dir) == 48
        assert emptied(s.spool_dir)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_key_revoked_through_one_process_is_refused_by_another_at_once(run_set, tmp_path):
    """Two collectors on one data directory share nothing but it and the database, as two
    workers do; one caches the key parsed, the revocation reaches it anyway."""
    first, second = distinct_bundles(run_set, load_private_key(), 2)
    one = ServedCollector(tmp_path / "shared").start()
    other = ServedCollector(tmp_path / "shared").start()
    try:
        one.register()
        assert post(other.url, first).status_code == 201  # the other process knows the key
        kid = key_id(load_private_key().public_key())
        revoked = httpx.post(f"{one.url}/api/v1/keys/{kid}/revoke", headers=ADMIN)
        assert revoked.status_code == 200
        refused = post(other.url, second)
        assert refused.status_code == 403, refused.text
        assert "revoked" in refused.json()["detail"]
        assert post(other.url, first).status_code == 403  # a replay too
        assert count_rows(one.data) == 1
    finally:
        one.stop()
        other.stop()


def test_a_revocation_during_the_recomputation_is_refused_in_the_write(
    bundle, tmp_path, monkeypatch
):
    """The key verified, then was revoked before the row was written: the write's own
    transaction reads the revocation again."""
    s = Settings(data_dir=tmp_path / "collector", admin_token=TOKEN)
    check = app_module.check_run_set

    def revoked_meanwhile(unpacked: Unpacked, signed: Signed) -> Result:
        store.revoke_key(db.sessions(db.make_engine(s.database_url)), signed.key_id)
        return check(unpacked, signed)

    monkeypatch.setattr(app_module, "check_run_set", revoked_meanwhile)
    with TestClient(create_app(s)) as client:
        register(client)
        refused = client.post("/api/v1/submissions", content=bundle, headers=TAR)
    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"].startswith("revoked signing key")
    assert count_rows(s.data_dir) == 0
