"""assess on a hand-made run set: which run gives which dimension, across modes and scales."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from deepspark_agent.devices import describe_system
from deepspark_core import series
from deepspark_core.assess import assess
from deepspark_core.files import write_json
from deepspark_core.report import seed_row
from deepspark_core.results import (
    PLAN_FILE,
    RUN_FILE,
    PlannedRun,
    QualityTarget,
    Result,
    RunPlan,
    RunRecord,
    SchemaError,
)
from test_events import BAD_LOGS, bad_log, line, render, window_events

SECOND = 1_000_000_000


def plan(runs: list[PlannedRun], nproc: int = 4, nnodes: int = 2) -> RunPlan:
    return RunPlan(
        agent_version="test", created_at="2026-11-28T00:00:00+00:00", model="m", task="t",
        config="mini", precision="fp32", batch_size=10, nproc=nproc, nnodes=nnodes, runs=runs,
        warmup_windows=1, windows=3, tolerance=0.01, runtime="process",
        quality=QualityTarget(metric="top1", direction="higher", target=0.5),
        system=describe_system(),
    )  # fmt: skip


def write_run(
    run_set: Path,
    planned: PlannedRun,
    speed: float,
    final: float | None = None,
    log: list[str] | None = None,
    wait_ms: object = None,
    **record: object,
):
    """A successful run: 4 one-second windows of `speed` samples (each waiting wait_ms for
    its data, when given), then its final quality; or the given log lines. `record`
    overrides run.json's fields."""
    lines = [line("run_start", mono_ns=0)]
    waited = {} if wait_ms is None else {"data_wait_ms": wait_ms}
    for w in range(4):
        lines.append(line("block_start", window=w, mono_ns=w * 2 * SECOND))
        stop = (w * 2 + 1) * SECOND
        lines.append(line("block_stop", window=w, samples_count=speed, mono_ns=stop, **waited))
    if final is not None:
        lines.append(line("eval_accuracy", final, epoch_num=4, mono_ns=8 * SECOND))
    lines.append(line("run_stop", status="success", mono_ns=9 * SECOND))
    run_dir = run_set / planned.label
    run_dir.mkdir(parents=True)
    (run_dir / "mllog.log").write_text("\n".join(log or lines) + "\n")
    fields = {"exit_code": 0, "wall_s": 9.0, "mono_offset_ns": 0} | record
    ran = RunRecord(label=planned.label, seed=planned.seed, nproc=planned.nproc, **fields)
    write_json(run_dir / RUN_FILE, ran)


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


SPEED_1X = PlannedRun(label="speed-1x", mode="speed", seed=0, nproc=1)
CONVERGE = [PlannedRun(label=f"converge-{i}", mode="converge", seed=i, nproc=1) for i in range(5)]
TWO_WINDOWS = "2 measured windows, the rule needs 3"


@pytest.mark.parametrize("name", [*BAD_LOGS, "two windows"])
def test_a_log_that_would_lie_gives_speed_na_with_its_reason(tmp_path: Path, name: str) -> None:
    """Each bad log: the run keeps its status, its speed is N/A with the named reason in its
    notes, in result.json and in the rows; nothing better is made up from the other windows."""
    write_json(tmp_path / PLAN_FILE, plan([SPEED_1X], nproc=1, nnodes=1))
    log = render(window_events(windows=3)) if name == "two windows" else bad_log(name)
    write_run(tmp_path, SPEED_1X, 100, log=log)
    reason = TWO_WINDOWS if name == "two windows" else BAD_LOGS[name][1]

    result = assess(tmp_path)
    (run,) = result.runs
    assert run.status == "success" and run.speed is None
    assert (run.end_to_end_speed is None) == (name in BAD_LOGS)  # no samples to trust
    assert run.speed_na == reason and f"speed: {reason}" in run.notes
    assert run.why == f"speed: {reason}"
    assert result.dimensions.speed is None and result.dimensions.speed_na == reason
    assert f"speed: {reason}" in result.notes
    assert seed_row(result)["speed"] == f"N/A: {reason}"
    assert Result.model_validate_json(result.model_dump_json()) == result


def test_a_nan_accuracy_fails_its_run_not_the_set(tmp_path: Path) -> None:
    """One seed of five ends with eval_accuracy NaN: that run failed (outside the band), the
    other four, speed, accuracy and stability are all there, and no NaN is written."""
    write_json(tmp_path / PLAN_FILE, plan([SPEED_1X, *CONVERGE], nproc=1, nnodes=1))
    write_run(tmp_path, SPEED_1X, 100)
    for planned, final in zip(CONVERGE, (0.6, float("nan"), 0.6, 0.61, 0.6), strict=True):
        write_run(tmp_path, planned, 50, final)

    result = assess(tmp_path)
    nan = result.runs[2]
    assert (nan.status, nan.accuracy) == ("aborted", None)
    assert nan.reason == "final eval_accuracy is nan, not a finite number"
    assert all(r.status == "success" for r in result.runs if r is not nan)
    dims = result.dimensions
    assert dims.speed.value == pytest.approx(100)
    assert (dims.stability.runs, dims.stability.failed, dims.stability.outside) == (5, 1, 1)
    assert dims.stability.score == pytest.approx(0.8)
    assert dims.accuracy.value == pytest.approx(0.6)
    assert seed_row(result)["accuracy"] == "0.6 (reached, 4 of 5 runs)"
    assert result.state == "complete"
    assert "NaN" not in result.model_dump_json()


def test_runs_the_budget_cut_make_the_set_incomplete(tmp_path: Path) -> None:
    """The smoke suite's DLRM set of issue 14: one success, two runs killed at their budget,
    two never started. Stability is not scored; the row says incomplete, and from how many."""
    write_json(tmp_path / PLAN_FILE, plan([SPEED_1X, *CONVERGE], nproc=1, nnodes=1))
    write_run(tmp_path, SPEED_1X, 100)
    write_run(tmp_path, CONVERGE[0], 50, 0.89)
    for planned, budget in zip(CONVERGE[1:3], (300, 18), strict=True):
        log = render(window_events(windows=2))[:-1]  # killed: no run_stop
        error = f"killed after {budget} s budget"
        write_run(tmp_path, planned, 50, log=log, exit_code=-9, timed_out=True, error=error)
    for planned in CONVERGE[3:]:
        error = "not started: the 600 s budget was spent"
        write_run(tmp_path, planned, 0, log=[""], exit_code=None, started=False, error=error)

    result = assess(tmp_path)
    assert result.state == "incomplete"
    assert [r.status for r in result.runs] == ["success", "success"] + ["incomplete"] * 4
    assert result.runs[2].reason == "killed after 300 s budget"
    assert result.runs[5].reason == "not started: the 600 s budget was spent"
    assert result.dimensions.stability is None
    assert any(n.startswith("stability: incomplete, 1 of 5 converge runs") for n in result.notes)
    row = seed_row(result)
    assert row["model"] == "m (incomplete)"
    assert row["stability"] == "incomplete (1 of 5 runs)"
    assert row["accuracy"] == "0.89 (reached, 1 of 5 runs)"
    assert row["speed"].startswith("100.0/s")


def test_a_set_the_budget_cut_entirely_reads_incomplete_not_failed(tmp_path: Path) -> None:
    write_json(tmp_path / PLAN_FILE, plan([SPEED_1X], nproc=1, nnodes=1))
    error = "killed after 5 s budget"
    write_run(tmp_path, SPEED_1X, 100, log=[""], exit_code=-9, timed_out=True, error=error)
    result = assess(tmp_path)
    assert (result.state, result.runs[0].status) == ("incomplete", "incomplete")
    assert seed_row(result)["speed"] == "incomplete: killed after 5 s budget"


def test_a_result_json_from_before_the_incomplete_state_still_reads(tmp_path: Path) -> None:
    write_json(tmp_path / PLAN_FILE, plan([SPEED_1X], nproc=1, nnodes=1))
    write_run(tmp_path, SPEED_1X, 100)
    old = json.loads(assess(tmp_path).model_dump_json())
    del old["state"], old["dimensions"]["speed_na"], old["runs"][0]["speed_na"]
    assert Result.model_validate(old).state == "complete"


@pytest.mark.parametrize("name", BAD_LOGS)
def test_report_prints_a_bad_log_s_reason_in_its_rows_without_a_traceback(
    cli, tmp_path: Path, name: str
) -> None:
    write_json(tmp_path / PLAN_FILE, plan([SPEED_1X], nproc=1, nnodes=1))
    write_run(tmp_path, SPEED_1X, 100, log=bad_log(name))
    reason = BAD_LOGS[name][1]
    code, out, err = cli("report", str(tmp_path))
    assert code == 0 and not err
    assert any("speed-1x" in row and f"speed: {reason}" in row for row in out.splitlines())
    code, out, _ = cli("report", str(tmp_path), "--markdown")
    assert code == 0 and f"| N/A: {reason} |" in out


def write_converge_set(run_set: Path, wait_ms: object, speed_runs: bool = False) -> Result:
    """Three converge runs of 1,900 samples/s that each waited wait_ms a window for data (and,
    with speed_runs, a speed run that reports the speed); assessed."""
    runs = CONVERGE[:3]
    write_json(run_set / PLAN_FILE, plan([SPEED_1X, *runs] if speed_runs else runs, 1, 1))
    if speed_runs:
        write_run(run_set, SPEED_1X, 3000)
    for planned in runs:
        write_run(run_set, planned, 1900, 0.6, wait_ms=wait_ms)
    return assess(run_set)


def test_an_input_bound_converge_run_says_so_in_its_row(tmp_path: Path) -> None:
    """34% of every window waiting for data: the loader delivered what the windows trained
    on, and without the wait they would have trained 1,900 / 0.66 samples/s."""
    result = write_converge_set(tmp_path, wait_ms=340)
    note = "input-bound: 34% of the time waiting for data (loader ~1,900 samples/s; without the wait ~2,879/s)"  # noqa: E501
    for run in result.runs:
        assert run.loader.wait_s == pytest.approx(1.02)  # the 3 measured windows'
        assert run.loader.share == pytest.approx(0.34)
        assert run.loader.speed == pytest.approx(1900)
        assert run.loader.compute_speed == pytest.approx(1900 / 0.66)
        assert note in run.notes
    assert seed_row(result)["speed"] == f"1900.0/s (3 windows); {note}"
    assert f"converge-0: {note}" in result.notes  # the run the speed is from
    assert Result.model_validate_json(result.model_dump_json()) == result
    speed_too = write_converge_set(tmp_path / "with-speed", wait_ms=340, speed_runs=True)
    assert seed_row(speed_too)["speed"] == f"3000.0/s (3 windows); converge runs {note}"


def test_a_loader_that_keeps_up_adds_no_note(tmp_path: Path) -> None:
    result = write_converge_set(tmp_path, wait_ms=5)
    loader = result.runs[0].loader
    assert loader.share == pytest.approx(0.005) and loader.speed is None
    assert loader.compute_speed == pytest.approx(1900 / 0.995)
    assert not any("input-bound" in n for n in result.runs[0].notes + result.notes)
    assert seed_row(result)["speed"] == "1900.0/s (3 windows)"
    log = tmp_path / "converge-0" / "mllog.log"
    said = line("data_loader", "pillow x12 workers", workers=12, mono_ns=0)
    log.write_text(f"{said}\n{log.read_text()}")
    assert assess(tmp_path).runs[0].data_loader == "pillow x12 workers"


@pytest.mark.parametrize("wait_ms", ["soon", True, 1500, -1, 10**400])
def test_a_wait_that_cannot_be_true_is_noted_and_speed_stands(tmp_path: Path, wait_ms) -> None:
    result = write_converge_set(tmp_path, wait_ms=wait_ms)
    run = result.runs[0]
    assert run.loader is None and run.speed.value == pytest.approx(1900)
    assert any(n.startswith("loader: measured window 0 data_wait_ms") for n in run.notes)
    assert seed_row(result)["speed"] == "1900.0/s (3 windows)"


def test_a_log_without_waits_has_no_loader_figure(tmp_path: Path) -> None:
    """Older logs and speed runs: the new fields stay at their defaults, so a result signed
    before them recomputes to the same predicate (attest compares defaults leniently)."""
    result = write_converge_set(tmp_path, wait_ms=None)
    assert all(r.loader is None and r.data_loader is None for r in result.runs)
    dumped = result.model_dump(mode="json", exclude_defaults=True)
    assert not any({"loader", "data_loader"} & set(run) for run in dumped["runs"])


def two_node_run(run_set: Path) -> Path:
    """A 2-node speed run whose node 1 recorded on a clock 5 s behind node 0's (run.json's
    node_clock_ns says so): node 0's device draws 100 W and holds 2 GB, node 1's 300 W and
    4 GB, both with an energy counter. Its run directory."""
    runs = [PlannedRun(label="speed-1x-2n", mode="speed", seed=0, nproc=1, nnodes=2)]
    write_json(run_set / PLAN_FILE, plan(runs, nproc=1))
    shift = 5 * SECOND
    write_run(run_set, runs[0], 100, node_clock_ns={1: shift})
    run_dir = run_set / "speed-1x-2n"

    def telemetry(name: str, watts: float, gb: float, offset_ns: int) -> None:
        rows = [
            {"t_ns": t * SECOND // 10 - offset_ns, "scope": "accelerator", "device": "0",
             "power_w": watts, "mem_used_bytes": gb * 1e9, "energy_j": watts * t / 10}
            for t in range(90)
        ]  # fmt: skip
        (run_dir / name).write_text("".join(json.dumps(r) + "\n" for r in rows))

    telemetry("telemetry.jsonl", 100.0, 2.0, 0)
    telemetry("telemetry-node1.jsonl", 300.0, 4.0, shift)  # its clock reads 5 s less
    return run_dir


def test_a_multi_node_run_sums_every_node_s_power_on_node_0_s_clock(tmp_path: Path) -> None:
    """Node 1's telemetry (another clock, 5 s behind) is shifted by the run's node_clock_ns:
    unshifted, its readings would fall outside the windows and the run would have no power.
    The run's power is both nodes' devices summed, memory per device; `nodes` each node's."""
    two_node_run(tmp_path)
    (run,) = assess(tmp_path).runs
    assert run.power.mean_w == pytest.approx((100.0, 300.0)) and run.power.devices == 2
    assert run.power.energy_j == pytest.approx(400.0 * 3)  # 3 measured one-second windows
    assert run.energy_counter_j == pytest.approx(400.0 * 3)
    assert run.memory.mean_gb == pytest.approx((2.0, 4.0))
    assert [(n.node, n.power.total_w, n.memory.mean_gb) for n in run.nodes] == [
        (0, pytest.approx(100.0), pytest.approx((2.0,))),
        (1, pytest.approx(300.0), pytest.approx((4.0,))),
    ]


def test_each_node_s_telemetry_is_parsed_once_for_all_its_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Power, memory and energy come from one parse of each node's file, not one per metric:
    the collector recomputes every submission."""
    two_node_run(tmp_path)
    parsed: list[tuple[str, tuple[str, ...]]] = []
    read_telemetry = series.read_telemetry

    def counted(path: Path, metrics: Iterable[str]) -> series.Telemetry:
        parsed.append((path.name, tuple(metrics)))
        return read_telemetry(path, parsed[-1][1])

    monkeypatch.setattr(series, "read_telemetry", counted)
    (run,) = assess(tmp_path).runs
    assert run.power is not None and run.memory is not None and run.energy_counter_j
    wanted = ("power_w", "mem_used_bytes", "energy_j")
    assert sorted(parsed) == [("telemetry-node1.jsonl", wanted), ("telemetry.jsonl", wanted)]
