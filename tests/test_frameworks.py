"""One model on two frameworks, one machine: ResNet50 mini in PyTorch and in PaddlePaddle
through the same agent, side by side in the evaluation's report (trains for real)."""

from __future__ import annotations

import json

import pytest

from deepspark_core.results import Result
from workload_runs import preset

pytestmark = pytest.mark.slow


def test_resnet50_on_pytorch_and_paddlepaddle_side_by_side(cli, tmp_path):
    code, out, err = cli(
        "up", "--suite", "frameworks", "--runtime", "process", "--out", str(tmp_path), "--json"
    )
    assert code == 0, err
    torch_run, paddle_run = (Result.model_validate(r) for r in json.loads(out))
    assert [r.plan.framework for r in (torch_run, paddle_run)] == ["pytorch", "paddlepaddle"]
    assert {r.plan.implements for r in (torch_run, paddle_run)} == {"resnet50"}
    # The same metric and target; each implementation has its own reference convergence
    mine = {"reference_epochs", "reference_batch"}
    assert torch_run.plan.quality.model_dump(exclude=mine) == paddle_run.plan.quality.model_dump(
        exclude=mine
    )
    for result, logged in ((torch_run, "pytorch 2."), (paddle_run, "paddlepaddle 3.")):
        assert all(r.status == "success" for r in result.runs), [r.reason for r in result.runs]
        assert all(r.framework.startswith(logged) for r in result.runs)
        dims = result.dimensions
        assert dims.accuracy.converged and dims.speed.value > 0 and dims.stability.runs == 5
    # Both saw the same generated data: the twins share it through the helper library.
    assert {r.dataset for r in torch_run.runs + paddle_run.runs if r.mode == "converge"} == {
        torch_run.runs[1].dataset
    }
    (root,) = tmp_path.iterdir()
    rows = (root / "report.md").read_text().splitlines()[2:]
    target = f"top1 {preset('resnet50', 'mini').target:g}"  # the twins share it
    assert [row.split(" | ")[1:3] for row in rows] == [
        ["resnet50", target],
        ["resnet50_paddle", target],
    ]
    assert "| pytorch 2." in rows[0] and "| paddlepaddle 3." in rows[1]
    page = (root / "report.html").read_text()
    assert page.count("<section>") == 2 and "paddlepaddle 3." in page
