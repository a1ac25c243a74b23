"""Conformer in infer mode (contract 1.1) on random weights. Its inference-smoke entry (a mini
converge run, then offline and latency inference with its weights, eager) is checked with the
whole suite, in test_inference.py. The compiled engine is not run here: compiling the model on
a shared CPU takes longer than the rest of this file."""

from pathlib import Path

import pytest

from workload_runs import final, infer

NAME = "conformer"


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
