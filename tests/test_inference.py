"""Infer mode (contract 1.1): latency percentiles, the checkpoint a converge run writes and an
infer run loads, the compiled engine, the refusal of a workload without infer, and
`up --suite inference-smoke` signed and verified."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest

from deepspark_agent.planning import suite_runs
from deepspark_agent.suites import SuiteEntry, load_suite
from deepspark_core.assess import assess
from deepspark_core.contract import RunSpec
from deepspark_core.events import EventLogError, parse_lines
from deepspark_core.files import write_json
from deepspark_core.metrics import Latency, MetricError, latency, percentile
from deepspark_core.report import inference_row, markdown_table, seed_row
from deepspark_core.results import PLAN_FILE, RESULT_FILE, PlannedRun, Result
from test_assess import SECOND, plan, write_run
from test_events import line
from workload_runs import MODEL_IMAGES, converge, events, final, infer, inference_smoke, run

NAME = "resnet50"
SUITES = MODEL_IMAGES.parent / "suites"
SPLIT = 512  # the mini preset's evaluation split: 512 glyph scenes


def window_lines(number: int, latencies: list[float]) -> list[str]:
    t = (number + 1) * SECOND
    return [
        line("block_start", window=number, mono_ns=t),
        line("block_stop", window=number, samples_count=32, mono_ns=t + SECOND // 10),
        line("infer_latency", window=number, latency_ms=latencies, mono_ns=t + SECOND // 5),
    ]


def test_latency_percentiles_by_hand_on_a_known_log():
    """A warm-up window of slow queries, then 20 queries of 1..20 ms over five windows (the
    last window's in two events). Nearest rank over n = 20: p50 is the 10th smallest (10),
    p90 the 18th (18), p99 the 20th (20); the mean is 10.5. The warm-up's 500 ms are left out."""
    lines = window_lines(0, [500.0, 500.0])
    lines += window_lines(1, [4, 1, 3, 2]) + window_lines(2, [8, 7, 6, 5])
    lines += window_lines(3, [12.0, 9, 10, 11]) + window_lines(4, [16, 13, 15, 14])
    lines += window_lines(5, [20, 17])
    lines.append(line("infer_latency", window=5, latency_ms=[18, 19], mono_ns=7 * SECOND))
    log = parse_lines(lines)
    measured = log.windows()[1:]
    found = latency(log.latencies(w.number for w in measured))
    assert (found.p50_ms, found.p90_ms, found.p99_ms) == (10, 18, 20)
    assert (found.mean_ms, found.queries) == (10.5, 20)
    assert percentile([7.0], 99) == 7.0  # one query: every percentile is it
    assert percentile(range(1, 101), 90) == 90 and percentile(range(1, 101), 99) == 99


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({"latency_ms": [1.0]}, "line 1: infer_latency names no window"),
        ({"window": 0, "latency_ms": 3}, "has no latency_ms list"),
        ({"window": 0, "latency_ms": [1.0, -2.0]}, "latency -2.0 is not a non-negative time"),
        ({"window": 0, "latency_ms": ["1"]}, "latency '1' is not a non-negative time"),
    ],
)
def test_latencies_that_would_lie_name_their_line(metadata, message):
    log = parse_lines([line("infer_latency", **metadata)])
    with pytest.raises(EventLogError, match=message):
        log.latencies([0])
    with pytest.raises(MetricError, match="no query latency recorded"):
        latency([])


def test_an_infer_run_speaks_contract_1_1_and_the_others_stay_1():
    infer = RunSpec(NAME, "mini", "infer", 0, scenario="latency", engine="compile")
    env = infer.env(Path("/out"), checkpoint=Path("/w/checkpoint.pt"))
    assert env["DS_CONTRACT_VERSION"] == "1.1" and env["DS_MODE"] == "infer"
    assert (env["DS_SCENARIO"], env["DS_ENGINE"]) == ("latency", "compile")
    assert env["DS_CHECKPOINT"] == "/w/checkpoint.pt"
    speed = RunSpec(NAME, "mini", "speed", 0).env(Path("/out"))
    assert speed["DS_CONTRACT_VERSION"] == "1" and "DS_SCENARIO" not in speed


def infer_run(
    run_set: Path, planned: PlannedRun, weights: list[str], speed: int = 50, ms: float = 1.0
) -> None:
    """write_run's 4 one-second windows of `speed` samples (the first a warm-up), top-1 0.6,
    the weights logged, each window's latencies (the warm-up's 900 ms, then 1..9 ms times
    `ms`), and telemetry: 100 W sampled, an energy counter rising at 90 J/s."""
    write_run(run_set, planned, speed, 0.6)
    lines = [*weights, line("infer_latency", window=0, latency_ms=[900], mono_ns=SECOND)]
    lines += [
        line("infer_latency", window=w, latency_ms=[ms * (3 * w - i) for i in (2, 1, 0)])
        for w in (1, 2, 3)
    ]
    with (run_set / planned.label / "mllog.log").open("a") as log:
        log.write("\n".join(lines) + "\n")
    ticks = [
        {"t_ns": t * SECOND // 2, "scope": "accelerator", "device": "0", "power_w": 100.0,
         "energy_j": 90.0 * t / 2}
        for t in range(19)
    ]  # fmt: skip
    (run_set / planned.label / "telemetry.jsonl").write_text(
        "".join(json.dumps(tick) + "\n" for tick in ticks)
    )


def known_infer_set(run_set: Path) -> None:
    """A converge run that logs its checkpoint, then three infer runs: offline on its weights,
    latency (compiled) on other weights, latency (eager) on random weights."""
    infer = {"mode": "infer", "seed": 0, "nproc": 1, "checkpoint_from": "converge-1"}
    runs = [
        PlannedRun(label="converge-1", mode="converge", seed=0, nproc=1),
        PlannedRun(label="infer-offline-eager", scenario="offline", engine="eager", **infer),
        PlannedRun(label="infer-latency-compile", scenario="latency", engine="compile", **infer),
        PlannedRun(label="infer-latency-eager", scenario="latency", engine="eager", **infer),
    ]
    write_json(run_set / PLAN_FILE, plan(runs, nproc=1, nnodes=1))
    write_run(run_set, runs[0], 50, 0.6)
    with (run_set / "converge-1" / "mllog.log").open("a") as log:
        log.write(line("checkpoint", "checkpoint.pt", sha256="ab" * 32) + "\n")
    infer_run(run_set, runs[1], [line("weights", "checkpoint", sha256="ab" * 32)])
    infer_run(run_set, runs[2], [line("weights", "checkpoint", sha256="cd" * 32)])
    infer_run(run_set, runs[3], [line("weights", "random")])


def test_an_infer_runs_figures_and_row_from_a_known_run_set(tmp_path: Path):
    """Three measured windows of 50 samples, 100 W sampled: 300 J by the power integral, 270 J
    by the counter, so 2 and 1.8 J per inference; latencies 1..9 ms: p50 5, p90 9, p99 9."""
    known_infer_set(tmp_path)
    result = assess(tmp_path)
    trained, offline, other, untrained = result.runs
    assert trained.checkpoint == "sha256:" + "ab" * 32
    figures = offline.inference
    assert (figures.weights_from, figures.batch_size) == ("converge-1", 10)
    assert figures.latency == Latency(p50_ms=5, p90_ms=9, p99_ms=9, mean_ms=5, queries=9)
    assert figures.accuracy.value == 0.6 and figures.accuracy.converged
    assert figures.j_per_inference == pytest.approx(2.0)
    assert figures.counter_j_per_inference == pytest.approx(1.8)
    row = inference_row(result, offline)
    assert row["config"].endswith("bs:10, 1x, fp32, offline, eager, converge-1's weights")
    assert row["throughput"] == "50.0/s (3 windows)"
    assert row["latency (ms)"] == "p50 5, p90 9, p99 9 (9 queries)"
    assert (row["accuracy"], row["energy (J/inference)"]) == (
        "0.6 (reached)",
        "chip 1.8 (energy counter), 2 (power integral), differing by 11% (over 10%)",
    )
    assert (row["node power (W)"], row["idle (W)"]) == (
        "N/A: no node power source",
        "idle not measured",
    )
    assert row["power (W)"] == "100*1 (accelerator)"
    # Weights that are not the planned checkpoint's: named by their digest, and noted.
    assert other.inference.weights_from is None and other.inference.batch_size == 1
    assert "latency, compile, checkpoint sha256:cdcd" in inference_row(result, other)["config"]
    noted = f"weights: checkpoint sha256:{'cd' * 32}, not converge-1's checkpoint"
    assert f"infer-latency-compile: {noted}" in result.notes
    # Random weights: the row says so, the accuracy is N/A with the reason, nothing is ranked.
    row = inference_row(result, untrained)
    assert "latency, eager, random weights" in row["config"]
    assert row["accuracy"] == "N/A: random weights (no checkpoint): says nothing of the model"
    assert result.unranked == "inference on random weights"
    assert (
        "Inference" in markdown_table([result])
        and seed_row(result)["speed"] == "50.0/s (3 windows)"
    )


def test_an_inference_entry_trains_once_then_infers_per_scenario_and_engine_on_one_device():
    entry = SuiteEntry(
        model=NAME, stability_runs=1, scenarios=["offline", "latency"], engines=["eager", "compile"]
    )
    runs = suite_runs(entry, node_devices=4)
    assert [(r.label, r.mode, r.nproc, r.checkpoint_from) for r in runs] == [
        ("converge-1", "converge", 4, None),
        ("infer-offline-eager", "infer", 1, "converge-1"),
        ("infer-offline-compile", "infer", 1, "converge-1"),
        ("infer-latency-eager", "infer", 1, "converge-1"),
        ("infer-latency-compile", "infer", 1, "converge-1"),
    ]
    untrained = suite_runs(SuiteEntry(model=NAME, stability_runs=0, scenarios=["latency"]), 1)
    assert [(r.label, r.checkpoint_from) for r in untrained] == [("infer-latency-eager", None)]
    assert load_suite("deepspark-inference").workloads[0].scenarios == ["offline", "latency"]


def test_a_workload_without_infer_is_refused_in_one_line(cli, tmp_path):
    code, _, err = cli("run", "dlrm", "--mode", "infer", "--out", str(tmp_path))
    assert code == 1 and not list(tmp_path.iterdir())  # refused before anything was launched
    assert err.strip() == (
        "error: dlrm does not support infer mode (its workload.toml's modes: speed, converge)"
    )
    code, _, err = cli("run", NAME, "--mode", "infer", "--checkpoint", str(tmp_path / "none.pt"))
    assert (
        code == 1
        and err.strip() == f"error: resnet50 mini: checkpoint {tmp_path}/none.pt is not a file"
    )
    # The library refuses too, at once, for an agent that did not look.
    result = run("dlrm", tmp_path, DS_MODE="infer", DS_CONTRACT_VERSION="1.1")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "error: dlrm does not support infer mode (its workload.toml's modes: speed, converge)"
    )
    assert events(tmp_path)[-1]["metadata"]["status"] == "aborted"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A mini converge run (seed 1): its checkpoint.pt and its events."""
    out = tmp_path_factory.mktemp("converge")
    return out / "checkpoint.pt", converge(NAME, out)


@pytest.mark.slow
def test_an_infer_runs_accuracy_is_the_converge_runs_final_evaluation_of_its_weights(
    trained, tmp_path
):
    """Same weights, same split, same batches, eager fp32 on the CPU: exactly equal."""
    checkpoint, trained_log = trained
    log = infer(NAME, tmp_path, checkpoint, DS_WINDOWS="3")
    assert final(log)["value"] == final(trained_log)["value"]
    assert (
        final(log, "weights")["metadata"]["sha256"]
        == (final(trained_log, "checkpoint")["metadata"]["sha256"])
    )
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert [m["samples_count"] for m in stops] == [20 * 32] * 4  # steps_per_window full batches
    latencies = [e["metadata"] for e in log if e["key"] == "infer_latency"]
    assert [(m["window"], len(m["latency_ms"])) for m in latencies] == [(w, 20) for w in range(4)]
    # Without a checkpoint: the seeded random weights, said so.
    untrained = infer(NAME, tmp_path / "random", None, DS_WINDOWS="3")
    assert final(untrained, "weights")["value"] == "random"
    assert final(untrained)["value"] < 0.5


@pytest.mark.slow
def test_the_compiled_engine_scores_as_eager_within_one_sample(trained, tmp_path):
    """torch.compile's fused kernels round differently from eager ones, which could flip a
    near-tied scene: the tolerance is one sample of the 512 (it matched exactly when
    written). The latency scenario: queries of one sample, a window of 20 x 32 of them."""
    checkpoint, trained_log = trained
    log = infer(
        NAME, tmp_path, checkpoint, DS_SCENARIO="latency", DS_ENGINE="compile", DS_WINDOWS="3"
    )
    assert final(log)["value"] == pytest.approx(final(trained_log)["value"], abs=1 / SPLIT)
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert [m["samples_count"] for m in stops] == [640] * 4
    queries = [e["metadata"]["latency_ms"] for e in log if e["key"] == "infer_latency"]
    assert [len(q) for q in queries] == [640] * 4  # at most 1,000 a line


@pytest.mark.slow
def test_up_inference_smoke_prints_a_row_per_scenario_signs_and_verify_recomputes(
    cli, tmp_path, monkeypatch
):
    """The whole inference-smoke suite, as a user runs it: each model's converge run, then its
    offline and latency runs with those weights, each entry checked (`inference_smoke`)."""
    # One thread, as workload_runs' runs: OpenMP's spinning threads multiply a run's time on a
    # shared runner, and an entry's budget would end its runs.
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    code, out, err = cli(
        "up", "--suite", "inference-smoke", "--runtime", "process", "--out", str(tmp_path)
    )
    assert code == 0, err
    assert "offline, eager, converge-1's weights" in out
    assert "latency, eager, converge-1's weights" in out
    suite = tomllib.loads((SUITES / "inference-smoke.toml").read_text())
    for index, entry in enumerate(suite["workloads"], 1):
        (entry_set,) = tmp_path.glob(f"*/{index:02d}-{entry['model']}-mini")
        checked = inference_smoke(entry["model"], entry_set)
        for run_ in checked.infer_runs:  # no power sensor
            assert run_.inference.j_per_inference is None
    (run_set,) = tmp_path.glob("*/01-resnet50-mini")
    result = Result.model_validate_json((run_set / RESULT_FILE).read_text())
    for run_ in result.infer_runs:
        assert run_.inference.latency_na is None
    html = (run_set.parent / "report.html").read_text()
    assert "latency (ms)" in html and "converge-1&#39;s weights" in html
    code, out, err = cli("verify", str(run_set / "statement.dsse.json"))
    assert code == 0, err
    assert "the whole result matches its recomputation" in out
