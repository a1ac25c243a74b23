"""ResNet50 mini through the agent: the README's main job and card linearity (trains for real)."""

from __future__ import annotations

import json

import pytest

from deepspark_agent.metrics import linearity
from deepspark_agent.results import Result

pytestmark = pytest.mark.slow


def test_smoke_suite_prints_a_six_dimension_row_with_stability_from_five_seeds(cli, tmp_path):
    code, out, _ = cli(
        "up", "--suite", "smoke", "--runtime", "process", "--out", str(tmp_path), "--json"
    )
    assert code == 0
    (result,) = [Result.model_validate(r) for r in json.loads(out)]
    assert result.plan.model == "resnet50" and result.plan.config == "mini"
    assert [r.label for r in result.runs] == ["speed-1x", *(f"converge-{i}" for i in range(1, 6))]
    assert [r.seed for r in result.runs if r.mode == "converge"] == [0, 1, 2, 3, 4]
    assert all(r.status == "success" for r in result.runs), [r.reason for r in result.runs]
    assert all(r.framework.startswith("pytorch 2.") for r in result.runs)
    dims = result.dimensions
    assert dims.speed.windows == 5 and dims.speed.value > 0
    assert dims.accuracy.converged and dims.accuracy.value >= 0.90
    assert dims.stability.runs == 5 and 0 <= dims.stability.score <= 1
    assert dims.memory.mean_gb[0] > 0.05  # torch alone holds more than 50 MB
    assert dims.linearity is None


def test_two_ranks_run_through_torchrun_and_give_card_linearity(cli, tmp_path):
    code, out, _ = cli(
        "run", "resnet50", "--config", "mini", "--mode", "speed", "--nproc", "2",
        "--runtime", "process", "--out", str(tmp_path), "--json",
    )  # fmt: skip
    assert code == 0
    result = Result.model_validate_json(out)
    run, baseline = result.runs
    assert (run.label, run.nproc, run.status) == ("run-1", 2, "success")
    assert (baseline.label, baseline.nproc, baseline.status) == ("baseline-1x", 1, "success")
    lin = result.dimensions.linearity
    assert (lin.devices, lin.node) == (2, None)
    assert lin.card == pytest.approx(linearity(run.speed.value, 2, baseline.speed.value))
