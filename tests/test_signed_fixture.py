"""A run set signed by the agent of 2026-12-05 (tests/data/signed-2026-12-05, made with the
sleeper workload before the core package split), checked in: later agents and collectors must
still verify it, whatever moves inside the code, and a report template change must not matter.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi.testclient import TestClient

from conftest import ADMIN, DATA
from deepspark_collector.app import create_app
from deepspark_core.result_bundle import pack_run_set
from test_collector import TAR, settings

FIXTURE = DATA / "signed-2026-12-05"
KEY_ID = "4427d827edfb9a233f70627ace04c8a2b57c79908bf2e6537e019823b69a8e5e"


def copied(tmp_path: Path) -> Path:
    run_set = tmp_path / "run-set"
    shutil.copytree(FIXTURE / "run-set", run_set)
    return run_set


def test_the_agent_verifies_a_run_set_signed_on_2026_12_05(cli, tmp_path):
    run_set = copied(tmp_path)
    (run_set / "report.html").write_text("<p>a report from a newer template</p>")
    pubkey = str(FIXTURE / "signing-key.pub.pem")
    code, out, err = cli("verify", str(run_set / "statement.dsse.json"), "--pubkey", pubkey)
    assert code == 0, err
    assert f"signed by {KEY_ID}" in out and "the whole result matches" in out


def test_the_collector_accepts_a_run_set_signed_on_2026_12_05(tmp_path):
    bundle = pack_run_set(copied(tmp_path), tmp_path / "old.tar").read_bytes()
    with TestClient(create_app(settings(tmp_path))) as client:
        assert client.post("/api/v1/vendors", json={"name": "acme"}, headers=ADMIN).is_success
        pem = (FIXTURE / "signing-key.pub.pem").read_text()
        key = client.post(
            "/api/v1/keys", json={"vendor": "acme", "public_key_pem": pem}, headers=ADMIN
        )
        assert key.json()["key_id"] == KEY_ID
        answer = client.post("/api/v1/submissions", content=bundle, headers=TAR)
        assert answer.status_code == 201, answer.text
        (listed,) = client.get("/api/v1/results").json()
        assert listed["vendor"] == "acme" and listed["model"] == "sleeper"
