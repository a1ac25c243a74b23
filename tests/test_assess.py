"""assess on a hand-made run set: which run gives which dimension, across modes and scales."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepspark_agent.assess import assess
from deepspark_agent.devices import describe_system
from deepspark_agent.files import write_json
from deepspark_agent.results import (
    PLAN_FILE,
    RUN_FILE,
    PlannedRun,
    QualityTarget,
    RunPlan,
    RunRecord,
    SchemaError,
)
from test_events import line

SECOND = 1_000_000_000


def plan(runs: list[PlannedRun], nproc: int = 4, nnodes: int = 2) -> RunPlan:
    return RunPlan(
        agent_version="test", created_at="2026-11-28T00:00:00+00:00", model="m", task="t",
        config="mini", precision="fp32", batch_size=10, nproc=nproc, nnodes=nnodes, runs=runs,
        warmup_windows=1, windows=3, tolerance=0.01, runtime="process",
        quality=QualityTarget(metric="top1", direction="higher", target=0.5),
        system=describe_system(),
    )  # fmt: skip


def write_run(run_set: Path, planned: PlannedRun, speed: float, final: float | None = None):
    """A successful run: 4 one-second windows of `speed` samples, then its final quality."""
    lines = [line("run_start", mono_ns=0)]
    for w in range(4):
        lines.append(line("block_start", window=w, mono_ns=w * 2 * SECOND))
        stop = (w * 2 + 1) * SECOND
        lines.append(line("block_stop", window=w, samples_count=speed, mono_ns=stop))
    if final is not None:
        lines.append(line("eval_accuracy", final, epoch_num=4, mono_ns=8 * SECOND))
    lines.append(line("run_stop", status="success", mono_ns=9 * SECOND))
    run_dir = run_set / planned.label
    run_dir.mkdir(parents=True)
    (run_dir / "mllog.log").write_text("\n".join(lines) + "\n")
    record = RunRecord(
        label=planned.label, seed=planned.seed, nproc=planned.nproc, exit_code=0, wall_s=9.0,
        mono_offset_ns=0,
    )  # fmt: skip
    write_json(run_dir / RUN_FILE, record)


def test_an_evaluation_takes_each_dimension_from_its_runs(tmp_path: Path) -> None:
    runs = [
        PlannedRun(label="speed-1x", mode="speed", seed=0, nproc=1),
        PlannedRun(label="speed-4x", mode="speed", seed=0, nproc=4),
        PlannedRun(label="speed-4x-2n", mode="speed", seed=0, nproc=4, nnodes=2),
        *(PlannedRun(label=f"converge-{i}", mode="converge", seed=i, nproc=4) for i in (1, 2, 3)),
    ]
    write_json(tmp_path / PLAN_FILE, plan(runs))
    for planned, speed in zip(runs[:3], (100, 360, 648), strict=True):
        write_run(tmp_path, planned, speed)
    for planned, final in zip(runs[3:], (0.60, 0.62, 0.61), strict=True):
        write_run(tmp_path, planned, 300, final)

    result = assess(tmp_path)
    dims = result.dimensions
    assert [r.label for r in result.runs] == [r.label for r in runs]
    assert dims.speed.value == pytest.approx(360)  # one node, 4 devices, in speed mode
    assert dims.linearity.card == pytest.approx(360 / (4 * 100))  # 0.9
    assert dims.linearity.node == pytest.approx(648 / (2 * 360))  # 0.9
    assert (dims.linearity.devices, dims.linearity.nodes) == (4, 2)
    assert dims.accuracy.value == pytest.approx(0.61) and dims.accuracy.converged
    assert dims.stability.runs == 3 and dims.stability.outside == 0


def test_a_run_not_yet_recorded_is_noted_and_the_rest_still_count(tmp_path: Path) -> None:
    runs = [
        PlannedRun(label="speed-1x", mode="speed", seed=0, nproc=1),
        PlannedRun(label="speed-4x", mode="speed", seed=0, nproc=4),
    ]
    write_json(tmp_path / PLAN_FILE, plan(runs, nnodes=1))
    write_run(tmp_path, runs[0], 100)
    (tmp_path / "speed-4x").mkdir()  # cut off: started, never recorded
    result = assess(tmp_path)
    assert [r.label for r in result.runs] == ["speed-1x"]
    assert "speed-4x: planned but not recorded" in result.notes
    assert result.dimensions.speed is None and result.dimensions.linearity is None


@pytest.mark.parametrize("label", ["../escape", "a/b", "", "X", "-lead", "a" * 65])
def test_a_run_label_is_a_plain_directory_name(label: str) -> None:
    with pytest.raises(ValueError, match="label"):
        PlannedRun(label=label, mode="speed", seed=0, nproc=1)


def test_a_record_that_disagrees_with_the_plan_is_refused(tmp_path: Path) -> None:
    planned = PlannedRun(label="speed-1x", mode="speed", seed=0, nproc=1)
    write_json(tmp_path / PLAN_FILE, plan([planned], nproc=1, nnodes=1))
    write_run(tmp_path, planned.model_copy(update={"seed": 7}), 100)
    with pytest.raises(SchemaError, match="does not record the run"):
        assess(tmp_path)
