"""`deepspark-agent submit` and `run --collector` against a real collector over HTTP."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import httpx
import pytest

from conftest import ServedCollector
from deepspark_agent.submit import outbox_dir, pins_path, rejected_dir
from deepspark_core.result_bundle import pack_run_set
from deepspark_core.runset import STATEMENT_FILE
from deepspark_core.signing import key_id, load_private_key


@pytest.fixture
def collector(tmp_path) -> Iterator[ServedCollector]:
    served = ServedCollector(tmp_path / "collector")
    try:
        yield served.start()
    finally:
        served.stop()


def submit(cli, *args: str) -> tuple[int, list[dict], str]:
    code, out, err = cli("submit", *args, "--json")
    return code, json.loads(out) if out.strip() else [], err


def test_created_then_duplicate_with_a_verified_receipt(cli, collector, run_set):
    collector.register()
    code, (first,), err = submit(cli, str(run_set), "--collector", collector.url)
    assert code == 0, err
    assert first["status"] == "created" and first["detail"] == "receipt verified"
    code, (again,), _ = submit(cli, str(run_set), "--collector", collector.url)
    assert code == 0 and again["status"] == "duplicate"
    assert again["receipt"]["submission_id"] == first["receipt"]["submission_id"]
    assert [r["id"] for r in collector.results()] == [first["receipt"]["submission_id"]]
    assert list(outbox_dir().glob("*.tar")) == []  # delivered: nothing left queued
    pins = json.loads(pins_path().read_text())
    assert pins[collector.url]["key_id"] == first["receipt"]["collector_key_id"]


def test_an_unreachable_collector_queues_and_flush_delivers(
    cli, sleeper, collector, run_set, tmp_path
):
    collector.register()
    assert submit(cli, str(run_set), "--collector", collector.url)[0] == 0
    collector.stop()
    code, out, err = cli(
        "run", "sleeper", "--runtime", "process", "--mode", "converge", "--runs", "2",
        "--out", str(tmp_path / "later"), "--collector", collector.url,
    )  # fmt: skip
    assert code == 0, err  # the run succeeded; only its delivery waits
    assert "queued" in out and "submit --flush" in out
    assert len(list(outbox_dir().glob("*.tar"))) == 1
    assert submit(cli, "--flush", "--collector", collector.url)[0] == 1  # still down

    collector.start()  # same data directory, same port
    code, flushed, err = submit(cli, "--flush", "--collector", collector.url)
    assert code == 0, err
    assert [r["status"] for r in flushed] == ["created"]
    assert list(outbox_dir().glob("*.tar")) == []
    assert len(collector.results()) == 2


def test_a_rejection_exits_1_and_keeps_the_bundle(cli, collector, run_set):
    code, (rejected,), _ = submit(cli, str(run_set), "--collector", collector.url)
    assert code == 1 and rejected["status"] == "rejected"
    assert "unknown signing key" in rejected["detail"]
    assert len(list(rejected_dir().glob("*.tar"))) == 1
    assert list(outbox_dir().glob("*.tar")) == []  # not retried by --flush
    assert collector.results() == []


def test_a_collector_presenting_another_key_is_refused(cli, collector, run_set, tmp_path):
    collector.register()
    assert submit(cli, str(run_set), "--collector", collector.url)[0] == 0
    collector.stop()
    # Another collector (its own receipt key) answers at the same URL.
    collector.data = tmp_path / "impostor"
    collector.start()
    collector.register()
    code, out, _ = cli("submit", str(run_set), "--collector", collector.url)
    assert code == 1 and "refused" in out and "pinned on first use" in out
    assert collector.results() == []  # refused before anything was sent
    assert len(list(outbox_dir().glob("*.tar"))) == 1  # kept: no verified receipt


def test_an_unsigned_run_set_is_an_error(cli, sleeper, collector, tmp_path):
    cli("run", "sleeper", "--runtime", "process", "--out", str(tmp_path / "runs"))
    (run_set,) = (tmp_path / "runs").iterdir()
    code, (result,), _ = submit(cli, str(run_set), "--collector", collector.url)
    assert code == 1 and result["status"] == "error" and "not signed" in result["detail"]


def test_a_packed_bundle_travels_and_is_submitted_as_a_file(cli, collector, run_set, tmp_path):
    """The air-gapped path: pack inside, carry the file out, submit it elsewhere."""
    collector.register()
    carried = tmp_path / "carried" / "result.tar"
    carried.parent.mkdir()
    code, out, err = cli("pack", str(run_set), "--out", str(carried))
    assert code == 0, err
    assert f"wrote {carried}" in out
    code, (sent,), err = submit(cli, str(carried), "--collector", collector.url)
    assert code == 0 and sent["status"] == "created", err
    assert carried.exists()  # the user's file stays; only the outbox copy is removed
    code, _, err = cli("pack", str(tmp_path / "carried"), "--out", str(tmp_path / "x.tar"))
    assert code == 1 and "error:" in err and err.count("\n") == 1


def test_a_vendor_claim_and_a_statement_replayed_first(cli, collector, run_set):
    """The receipt names the statement and who is credited; a replay of our statement that
    reached the collector first is our submission, and its receipt verifies."""
    collector.register("acme")
    code, (refused,), _ = submit(cli, str(run_set), "--collector", collector.url, "--vendor", "x")
    assert code == 1 and refused["status"] == "rejected"
    assert "HTTP 403: not signed by a registered, unrevoked key of vendor 'x'" in refused["detail"]

    envelope = json.loads((run_set / STATEMENT_FILE).read_text())
    spaced = run_set.parent / "replayed"
    shutil.copytree(run_set, spaced)
    (spaced / STATEMENT_FILE).write_text(json.dumps(envelope, indent=8))
    bundle = pack_run_set(spaced, run_set.parent / "replayed.tar").read_bytes()
    headers = {"Content-Type": "application/x-tar"}
    first = httpx.post(f"{collector.url}/api/v1/submissions", content=bundle, headers=headers)
    assert first.status_code == 201, first.text

    code, (ours,), err = submit(cli, str(run_set), "--collector", collector.url, "--vendor", "acme")
    assert code == 0, err
    assert ours["status"] == "duplicate" and ours["detail"] == "receipt verified"
    receipt = ours["receipt"]
    assert receipt["submission_id"] == first.json()["submission_id"]
    assert receipt["vendor"] == "acme"
    assert receipt["key_id"] == key_id(load_private_key().public_key())
    assert receipt["envelope_sha256"] == first.json()["envelope_sha256"]  # the replay's bytes
    assert len(collector.results()) == 1


def test_the_agent_names_its_key_so_a_spent_key_is_refused_before_the_body(cli, run_set, bundle):
    """The key's one token is spent (from another address, through a trusted proxy): the
    agent's submission, from an address of its own, names the key and is answered 429 before
    its body is read, and stays queued."""
    served = ServedCollector(
        run_set.parent.parent / "collector",
        options=(
            "--forwarded-allow-ips",
            "127.0.0.1",
            "--rate-burst",
            "1",
            "--rate-per-minute",
            "0.01",
        ),
    )
    served.start()
    try:
        served.register()
        spend = {"X-Forwarded-For": "192.0.2.1", "Content-Type": "application/x-tar"}
        url = f"{served.url}/api/v1/submissions"
        assert httpx.post(url, content=bundle, headers=spend, timeout=60).status_code == 201
        _, (queued,), _ = submit(cli, str(run_set), "--collector", served.url)
        assert queued["status"] == "queued" and "HTTP 429" in queued["detail"]
        assert "for this key" in queued["detail"]
        assert len(list(outbox_dir().glob("*.tar"))) == 1
    finally:
        served.stop()
