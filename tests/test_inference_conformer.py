"""Conformer in infer mode (contract 1.1): inference-smoke's Conformer entry run by `up` (a mini
converge run, then offline and latency inference with its weights, eager), and a run on
random weights. About two minutes on a CPU. The compiled engine is not run here: compiling
the model on a shared CPU takes longer than the rest of this file."""

import json
import os
import tomllib
from pathlib import Path

import pytest

from workload_runs import MODEL_IMAGES, final, infer, inference_smoke

NAME = "conformer"
SUITES = MODEL_IMAGES.parent / "suites"


def smoke_entry(folder: Path) -> Path:
    """A suite of inference-smoke's Conformer entry alone, written in folder."""
    smoke = tomllib.loads((SUITES / "inference-smoke.toml").read_text())
    (entry,) = [w for w in smoke["workloads"] if w["model"] == NAME]
    lines = ['name = "conformer-inference"', 'description = "inference-smoke\'s Conformer"']
    lines += ["[[workloads]]", *(f"{k} = {json.dumps(v)}" for k, v in entry.items())]
    suite = folder / "suite.toml"
    suite.write_text("\n".join(lines) + "\n")
    return suite


@pytest.mark.slow
def test_both_scenarios_give_a_row_scoring_the_converge_runs_cer_exactly(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`up` on inference-smoke's Conformer entry: a converge run, then offline and latency runs
    with its weights. Same weights, same held-out utterances, eager fp32 on the CPU: each
    infer run's CER equals the converge run's last evaluation exactly (the latency run
    evaluates at batch 1, where batch size and padding changed no utterance's best path)."""
    suite = smoke_entry(tmp_path)
    # One thread, as workload_runs' runs: OpenMP's spinning threads multiply a run's time on a
    # shared runner, and the entry's budget would end the runs.
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    code, out, err = cli(
        "up", "--suite", str(suite), "--runtime", "process", "--out", str(tmp_path)
    )
    assert code == 0, err
    assert "offline, eager, converge-1's weights, synthetic data" in out
    assert "latency, eager, converge-1's weights, synthetic data" in out
    (run_set,) = tmp_path.glob("conformer-inference-*/01-conformer-mini")
    result = inference_smoke(NAME, run_set)
    assert result.runs[0].accuracy <= 0.15  # cer, at the target: the weights are trained
    assert all(r.inference.accuracy.converged for r in result.infer_runs)


@pytest.mark.slow
def test_random_weights_are_said_and_score_far_from_the_target(tmp_path: Path):
    """No checkpoint: the seeded random weights, logged as such; one measured window of single
    utterances, each its own query, and the CER of an untrained model."""
    log = infer(NAME, tmp_path, None, DS_SCENARIO="latency", DS_WINDOWS="1")
    assert final(log, "weights")["value"] == "random"
    stops = [e["metadata"]["samples_count"] for e in log if e["key"] == "block_stop"]
    assert stops == [20 * 32] * 2  # a warm-up and a measured window of 640 queries of one
    assert final(log)["value"] > 0.8  # an untrained model's CER is about 1.0
    assert final(log, "global_batch_size")["value"] == 1
