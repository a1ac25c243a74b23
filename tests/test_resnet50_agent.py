"""Through the agent for real: the smoke suite (the README's main job) and card linearity."""

from __future__ import annotations

import json

import pytest

from deepspark_agent.suites import load_suite
from deepspark_core.metrics import linearity
from deepspark_core.results import Result

pytestmark = pytest.mark.slow


def test_smoke_suite_prints_a_six_dimension_row_per_model_with_stability_from_five_seeds(
    cli, tmp_path
):
    """The README's main job: every model of the smoke suite, measured on this CPU."""
    code, out, _ = cli(
        "up", "--suite", "smoke", "--runtime", "process", "--out", str(tmp_path), "--json"
    )
    assert code == 0
    results = [Result.model_validate(r) for r in json.loads(out)]
    assert [r.plan.model for r in results] == [e.model for e in load_suite("smoke").workloads]
    for result in results:
        assert result.plan.config == "mini"
        labels = ["speed-1x", *(f"converge-{i}" for i in range(1, 6))]
        assert [r.label for r in result.runs] == labels
        assert [r.seed for r in result.runs if r.mode == "converge"] == [0, 1, 2, 3, 4]
        assert all(r.status == "success" for r in result.runs), [r.reason for r in result.runs]
        assert all(r.framework.startswith("pytorch 2.") for r in result.runs)
        dims = result.dimensions
        assert dims.speed.windows == 5 and dims.speed.value > 0
        assert dims.accuracy.converged  # the median final value reached the target
        assert dims.stability.runs == 5 and 0 <= dims.stability.score <= 1
        assert dims.memory.mean_gb[0] > 0.05  # torch alone holds more than 50 MB
        assert dims.linearity is None and dims.power is None  # one CPU, no power sensor
        assert any(note.startswith("speed-1x: power:") for note in result.notes)
    (root,) = tmp_path.iterdir()
    assert (root / "report.html").is_file() and (root / "report.md").is_file()


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
