"""Infer mode (contract 1.1): latency percentiles, the checkpoint a converge run writes and an
infer run loads, the compiled engine, the refusal of a workload without infer, and
`up --suite inference-smoke` signed and verified."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepspark_agent.planning import suite_runs
from deepspark_agent.suites import SuiteEntry, load_suite
from deepspark_core.contract import RunSpec
from deepspark_core.events import EventLogError, parse_lines
from deepspark_core.metrics import MetricError, latency, percentile
from deepspark_core.results import RESULT_FILE, Result
from deepspark_core.runset import raw_files
from workload_runs import converge, events, run

NAME = "resnet50"
SPLIT = 360  # the mini preset's evaluation split: 20% of sklearn's 1,797 digits


def line(key: str, mono_ns: int, event_type: str = "POINT_IN_TIME", **metadata) -> str:
    event = {"time_ms": 0, "event_type": event_type, "key": key, "value": None}
    return ":::MLLOG " + json.dumps(event | {"metadata": {**metadata, "mono_ns": mono_ns}})


def window_lines(number: int, latencies: list[float]) -> list[str]:
    t = (number + 1) * 10**9
    return [
        line("block_start", t, "INTERVAL_START", window=number),
        line("block_stop", t + 10**8, "INTERVAL_END", window=number, samples_count=32),
        line("infer_latency", t + 10**8 + 1, window=number, latency_ms=latencies),
    ]


def test_latency_percentiles_by_hand_on_a_known_log():
    """A warm-up window of slow queries, then 20 queries of 1..20 ms over five windows (the
    last window's in two events). Nearest rank over n = 20: p50 is the 10th smallest (10),
    p90 the 18th (18), p99 the 20th (20); the mean is 10.5. The warm-up's 500 ms are left out."""
    lines = window_lines(0, [500.0, 500.0])
    lines += window_lines(1, [4, 1, 3, 2]) + window_lines(2, [8, 7, 6, 5])
    lines += window_lines(3, [12.0, 9, 10, 11]) + window_lines(4, [16, 13, 15, 14])
    lines += window_lines(5, [20, 17])
    lines.append(line("infer_latency", 7 * 10**9, window=5, latency_ms=[18, 19]))
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
    log = parse_lines([line("infer_latency", 1, **metadata)])
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


def infer(out: Path, checkpoint: Path | None, **env: str) -> list[dict]:
    """A mini infer run, checked as MLCommons' parser reads it; its events."""
    from mlperf_logging.compliance_checker.mlp_parser import parse_file

    weights = {"DS_CHECKPOINT": str(checkpoint)} if checkpoint else {}
    result = run(NAME, out, DS_MODE="infer", DS_CONTRACT_VERSION="1.1", **weights, **env)
    assert result.returncode == 0, result.stderr[-3000:]
    log = events(out)
    assert log[-1]["metadata"]["status"] == "success"
    _, errors = parse_file(str(out / "mllog.log"), ruleset="6.1.0")
    assert errors == []
    return log


def final(log: list[dict], key: str = "eval_accuracy") -> dict:
    return [e for e in log if e["key"] == key][-1]


@pytest.mark.slow
def test_an_infer_runs_accuracy_is_the_converge_runs_final_evaluation_of_its_weights(
    trained, tmp_path
):
    """Same weights, same split, same batches, eager fp32 on the CPU: exactly equal."""
    checkpoint, trained_log = trained
    log = infer(tmp_path, checkpoint, DS_WINDOWS="3")
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
    untrained = infer(tmp_path / "random", None, DS_WINDOWS="3")
    assert final(untrained, "weights")["value"] == "random"
    assert final(untrained)["value"] < 0.5


@pytest.mark.slow
def test_the_compiled_engine_scores_as_eager_within_one_sample(trained, tmp_path):
    """torch.compile's fused kernels round differently from eager ones, which could flip a
    near-tied digit: the tolerance is one sample of the 360 (it matched exactly when
    written). The latency scenario: queries of one sample, a window of 20 x 32 of them."""
    checkpoint, trained_log = trained
    log = infer(tmp_path, checkpoint, DS_SCENARIO="latency", DS_ENGINE="compile", DS_WINDOWS="3")
    assert final(log)["value"] == pytest.approx(final(trained_log)["value"], abs=1 / SPLIT)
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert [m["samples_count"] for m in stops] == [640] * 4
    queries = [e["metadata"]["latency_ms"] for e in log if e["key"] == "infer_latency"]
    assert [len(q) for q in queries] == [640] * 4  # at most 1,000 a line


@pytest.mark.slow
def test_up_inference_smoke_prints_a_row_per_scenario_signs_and_verify_recomputes(cli, tmp_path):
    code, out, err = cli(
        "up", "--suite", "inference-smoke", "--runtime", "process", "--out", str(tmp_path)
    )
    assert code == 0, err
    assert "offline, eager, converge-1's weights" in out
    assert "latency, eager, converge-1's weights" in out
    (run_set,) = tmp_path.glob("*/01-resnet50-mini")
    result = Result.model_validate_json((run_set / RESULT_FILE).read_text())
    trained, *inferred = result.runs
    assert [r.label for r in inferred] == ["infer-offline-eager", "infer-latency-eager"]
    for run_ in inferred:
        assert run_.status == "success", run_.reason
        figures = run_.inference
        assert figures.weights_from == "converge-1"
        assert figures.accuracy.value == trained.accuracy  # the same weights, the same split
        assert run_.speed.windows == 5
        assert figures.latency.p50_ms <= figures.latency.p90_ms <= figures.latency.p99_ms
        assert figures.j_per_inference is None and figures.latency_na is None  # no power sensor
    offline, single = (r.inference for r in inferred)
    assert (offline.batch_size, offline.latency.queries) == (32, 5 * 20)
    assert (single.batch_size, single.latency.queries) == (1, 5 * 20 * 32)
    weights = run_set / "converge-1" / "checkpoint.pt"
    assert weights.is_file() and weights not in raw_files(
        run_set
    )  # kept, neither signed nor packed
    code, out, err = cli("verify", str(run_set / "statement.dsse.json"))
    assert code == 0, err
    assert "the whole result matches its recomputation" in out
