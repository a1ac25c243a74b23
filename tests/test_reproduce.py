"""`up --reproduce URL` against a real collector: a published sleeper result run again here,
set beside the original with ratios, submitted, and linked both ways by the collector (on
SQLite and PostgreSQL); bad URLs are one-line errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import ServedCollector
from deepspark_agent.placement import Placement
from deepspark_agent.reproduce import ReproduceError, _runs_here, result_address
from deepspark_collector.app import create_app
from deepspark_collector.settings import DB_URL_ENV
from deepspark_core.result_bundle import pack_run_set
from deepspark_core.results import PLAN_FILE, PlannedRun, RunPlan
from deepspark_core.runset import REPRODUCTION_MD
from test_collector import TAR, register
from test_collector import settings as collector_settings


@pytest.fixture
def collector(database_url, tmp_path, monkeypatch) -> Iterator[ServedCollector]:
    """A served collector on SQLite, then on PostgreSQL, with this test's key registered."""
    if database_url:
        monkeypatch.setenv(DB_URL_ENV, database_url)
    served = ServedCollector(tmp_path / "collector")
    try:
        served.start().register()
        yield served
    finally:
        served.stop()


def published(cli, run_set: Path, collector: ServedCollector) -> int:
    code, out, err = cli("submit", str(run_set), "--collector", collector.url, "--json")
    assert code == 0, err
    return json.loads(out)[0]["receipt"]["submission_id"]


def test_a_published_result_is_reproduced_shown_beside_it_and_linked(
    cli, sleeper, signed, collector, tmp_path
):
    run_set, _ = signed
    ident = published(cli, run_set, collector)
    code, out, err = cli(
        "up", "--reproduce", f"{collector.url}/results/{ident}", "--runtime", "process",
        "--out", str(tmp_path / "here"), "--collector", collector.url,
    )  # fmt: skip
    assert code == 0, err
    assert f"reproducing published #{ident} (acme, cpu: " in err
    # Both seed rows and a ratio per dimension, on the terminal and in reproduction.md
    assert f"- published: published #{ident} (acme, cpu: " in out
    assert "| published | contract test | sleeper |" in out and "| here | contract test |" in out
    ratio_row = next(line for line in out.splitlines() if line.startswith("| here/published |"))
    assert "same settings" in ratio_row and "| 1x |" in ratio_row  # accuracy: a fixed score
    (copy,) = (tmp_path / "here").iterdir()
    assert copy.name.startswith(f"sleeper-mini-reproduce-{ident}-")
    assert (copy / REPRODUCTION_MD).read_text() in out
    # The same plan: workload, config, batch, runs (labels, seeds, ranks), windows
    original = RunPlan.model_validate_json((run_set / PLAN_FILE).read_bytes())
    again = RunPlan.model_validate_json((copy / PLAN_FILE).read_bytes())
    same = ("model", "config", "precision", "batch_size", "nproc", "runs", "windows",
            "warmup_windows", "tolerance", "implementation")  # fmt: skip
    assert {k: getattr(again, k) for k in same} == {k: getattr(original, k) for k in same}
    assert again.reproduces is not None and again.reproduces.id == ident
    assert again.reproduces.collector == collector.url and again.reproduces.skipped == []
    # Submitted: the original lists it (API and page), and it links back
    listed = httpx.get(f"{collector.url}/api/v1/results/{ident}").json()
    (reproduction,) = listed["reproductions"]
    assert reproduction["vendor"] == "acme" and reproduction["id"] != ident
    assert reproduction["ratios"]["accuracy"] == pytest.approx(1.0)  # sleeper's fixed score
    assert again.reproduces.statement == listed["payload_sha256"]
    page = httpx.get(f"{collector.url}/results/{ident}").text
    assert f'<a href="/results/{reproduction["id"]}">#{reproduction["id"]}</a>' in page
    assert "speed ratio" in page and "accuracy ratio\n1.000" in page
    back = httpx.get(f"{collector.url}/api/v1/results/{reproduction['id']}").json()
    assert back["reproduces"]["known"] and back["reproduces"]["id"] == ident
    assert back["reproductions"] == []
    page = httpx.get(f"{collector.url}/results/{reproduction['id']}").text
    assert f'Reproduces\n<a href="/results/{ident}">result #{ident}</a>' in page

    # Another collector stores it too, linked to no result of its own
    with TestClient(create_app(collector_settings(tmp_path / "other"))) as other:
        register(other)
        bundle = pack_run_set(copy, tmp_path / "copy.tar").read_bytes()
        stored = other.post("/api/v1/submissions", content=bundle, headers=TAR)
        assert stored.status_code == 201, stored.text
        alone = stored.json()["submission_id"]
        claim = other.get(f"/api/v1/results/{alone}").json()["reproduces"]
        assert not claim["known"] and claim["id"] == ident
        assert "unknown result on this collector" in other.get(f"/results/{alone}").text


@pytest.fixture
def not_a_collector() -> Iterator[str]:
    """An HTTP server that answers every GET with a page of its own."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bad_urls_are_one_line_errors(cli, signed, collector, not_a_collector, monkeypatch):
    ident = published(cli, signed[0], collector)
    wrong = {
        f"{collector.url}/results/{ident + 1}": f"{collector.url}: HTTP 404: no result {ident + 1}",
        f"{not_a_collector}/api/v1/results/1": f"{not_a_collector}: not a DeepSpark collector",
        f"{collector.url}/models/sleeper": "not a collector result's URL",
        "ftp://example.org/results/1": "not a collector result's URL",
        # the catalog without the test workloads: this host has no sleeper
        f"{collector.url}/api/v1/results/{ident}": "ran workload 'sleeper', which this host's",
    }
    for url, said in wrong.items():
        code, out, err = cli("up", "--reproduce", url, "--runtime", "process")
        assert code == 1 and said in err, (url, err)
        assert len(err.strip().splitlines()) == 1 and out == ""
    code, _, err = cli("up", "--reproduce", url, "--suite", "smoke")
    assert code == 1 and "not with --suite" in err


def test_runs_this_host_cannot_hold_are_skipped_with_why():
    runs = [
        PlannedRun(label="speed-1x", mode="speed", seed=0, nproc=1),
        PlannedRun(label="speed-2x", mode="speed", seed=0, nproc=2),
        PlannedRun(label="speed-1x-2n", mode="speed", seed=0, nproc=1, nnodes=2),
        PlannedRun(label="converge-1", mode="converge", seed=0, nproc=2),
        PlannedRun(label="converge-2", mode="converge", seed=1, nproc=1),
        PlannedRun(label="infer-offline-eager", mode="infer", seed=0, nproc=1,
                   scenario="offline", engine="eager", checkpoint_from="converge-1"),
    ]  # fmt: skip
    one = Placement(vendor="nvidia", indices=(0,), source="NVML")
    kept, skipped = _runs_here(runs, one)
    assert [r.label for r in kept] == ["speed-1x", "converge-2"]
    assert skipped == [
        "speed-2x (2 devices, this host has 1 nvidia (NVML))",
        "speed-1x-2n (2 nodes, this host is one)",
        "converge-1 (2 devices, this host has 1 nvidia (NVML))",
        "infer-offline-eager (its weights come from converge-1, skipped)",
    ]
    cpu_kept, _ = _runs_here(runs, Placement())  # a CPU host runs any number of ranks
    assert len(cpu_kept) == 5


def test_result_addresses():
    assert result_address("https://c.example/api/v1/results/7") == ("https://c.example", 7)
    assert result_address("http://h:8/sub/results/12/") == ("http://h:8/sub", 12)
    for bad in ("https://c.example/results/0", "https://c.example/results/x", "c/results/1"):
        with pytest.raises(ReproduceError):
            result_address(bad)
