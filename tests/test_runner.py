"""The agent end to end on `sleeper`, a framework-free workload with known figures."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import psutil
import pytest

from conftest import assert_telemetry_covers_the_run
from deepspark_agent import doctor
from deepspark_agent.planning import Request, single_runs
from deepspark_agent.runner import run_plan
from deepspark_agent.runtime.process import ProcessRuntime
from deepspark_agent.workloads import find_workload
from deepspark_core.assess import assess, event_log_path
from deepspark_core.events import read_events
from deepspark_core.metrics import speed
from deepspark_core.results import RESULT_FILE, RUN_FILE, PlannedRun, Result, RunPlan


def run_json(cli, tmp_path: Path, *args: str, runtime: str = "process") -> tuple[int, Result, Path]:
    """`run sleeper ... --json` in tmp_path: exit code, result, run directory."""
    code, out, _ = cli(
        "run", "sleeper", "--out", str(tmp_path), "--json", "--runtime", runtime, *args
    )
    (run_set,) = tmp_path.iterdir()
    return code, Result.model_validate_json(out), run_set


def test_five_converge_runs_give_the_hand_computed_stability(cli, sleeper, tmp_path):
    code, result, run_set = run_json(cli, tmp_path, "--mode", "converge", "--runs", "5")
    assert code == 0
    assert [r.seed for r in result.runs] == [0, 1, 2, 3, 4]
    assert all(r.status == "success" for r in result.runs)
    # Final scores 0.50 .. 0.54 (0.5 + seed/100): median 0.52; 0.50 and 0.54 lie 0.02 away,
    # 0.51 and 0.53 exactly at the 0.01 edge (inside): score 1 - 0.2 * 2 = 0.6.
    stab = result.dimensions.stability
    assert stab.baseline == pytest.approx(0.52)
    assert stab.outside == 2
    assert stab.score == pytest.approx(0.6)
    assert result.dimensions.accuracy.value == pytest.approx(0.52)
    assert result.dimensions.accuracy.converged  # target 0.5
    # Speed: 6 windows logged, the first is warm-up; 100 samples per >= 0.2 s window.
    assert result.dimensions.speed.windows == 5
    assert 0 < result.dimensions.speed.value <= 500
    assert result.dimensions.linearity is None  # one rank: N/A as in the seed table
    # Memory of the process tree over the measured windows, from the 10 Hz sampler.
    assert result.dimensions.memory_scope == "process-tree"
    assert 0.001 < result.dimensions.memory.mean_gb[0] < 1
    assert result.dimensions.telemetry_hz >= 9  # 10 Hz asked; a loaded CI box may lag a little
    assert_telemetry_covers_the_run(run_set / "run-1", "process-tree")
    assert result.dimensions.power is None
    assert any("power: no sensor recorded power_w" in n for n in result.notes)
    # The figures are those of the raw artifacts: recompute one run's speed by hand.
    run_1 = run_set / "run-1"
    windows = read_events(event_log_path(run_1)).windows()[1:]
    assert result.runs[0].speed.value == pytest.approx(speed(windows).value)
    saved = Result.model_validate_json((run_set / RESULT_FILE).read_text())
    assert saved == result == assess(run_set)
    assert (run_set / "report.md").read_text().startswith("| task | model | target")


def test_a_hanging_run_is_killed_with_its_whole_process_group(cli, sleeper, tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPER_BEHAVIOUR", "hang")
    code, result, run_set = run_json(cli, tmp_path, "--max-seconds", "3")
    assert code == 1  # no run succeeded
    (run,) = result.runs
    assert run.status == "incomplete"  # the agent cut it: it did not fail on its own
    assert run.reason == "killed after 3 s budget"
    assert result.state == "incomplete"
    record = json.loads((run_set / "run-1" / "run.json").read_text())
    assert record["timed_out"] is True
    child = int((run_set / "run-1" / "child.pid").read_text())
    with contextlib.suppress(psutil.NoSuchProcess):  # gone: killed and reaped
        assert psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_a_crash_is_recorded_with_its_exit_code(cli, sleeper, tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPER_BEHAVIOUR", "crash")
    code, result, _ = run_json(cli, tmp_path)
    assert code == 1
    assert result.runs[0].status == "aborted"
    assert result.runs[0].reason.startswith("exit code 3 (log ends without run_stop")
    assert result.notes[0].startswith("every run failed: run-1: exit code 3")


def test_a_workload_printing_no_events_is_a_failed_run_not_a_traceback(
    cli, sleeper, tmp_path, monkeypatch
):
    monkeypatch.setenv("SLEEPER_BEHAVIOUR", "garbage")
    code, result, _ = run_json(cli, tmp_path)
    assert code == 1
    assert "no MLLOG events (lines read: 2, malformed: 1)" in result.runs[0].reason


def test_report_recomputes_and_rejects_what_is_not_a_run(cli, sleeper, tmp_path):
    code, result, run_set = run_json(cli, tmp_path, "--mode", "converge", "--runs", "2")
    code, out, _ = cli("report", str(run_set), "--json")
    assert code == 0
    assert Result.model_validate_json(out) == result
    code, out, _ = cli("report", str(run_set))
    assert "DeepSpark six dimensions" in out and "sleeper" in out

    # Cut run-2's log short, as a kill would: the report says so instead of failing.
    mllog = run_set / "run-2" / "mllog.log"
    mllog.write_text("".join(mllog.read_text().splitlines(keepends=True)[:5]))
    code, out, _ = cli("report", str(run_set), "--json")
    assert code == 0
    run_2 = Result.model_validate_json(out).runs[1]
    assert run_2.status == "aborted" and "without run_stop" in run_2.reason

    code, _, err = cli("report", str(tmp_path / "nowhere"))
    assert code == 1 and "not a run directory" in err and len(err.strip().splitlines()) == 1
    (run_set / "plan.json").write_text("{ not json")
    code, _, err = cli("report", str(run_set))
    assert code == 1 and "plan.json" in err and "Traceback" not in err


def test_unknown_workload_and_config_are_one_line_errors(cli, sleeper, tmp_path):
    code, _, err = cli("run", "nosuch", "--out", str(tmp_path))
    assert code == 1 and "unknown workload 'nosuch' (known: " in err
    assert ", sleeper, " in err and ", resnet50, " in err  # the test workloads and the catalog's
    code, _, err = cli("run", "sleeper", "--config", "huge", "--out", str(tmp_path))
    assert code == 1 and "sleeper has no config 'huge' (known: mini)" in err
    assert not list(tmp_path.iterdir())  # nothing was started


def test_models_list_and_doctor(cli, sleeper):
    code, out, _ = cli("models", "list", "--json")
    assert code == 0
    (model,) = [m for m in json.loads(out) if m["name"] == "sleeper"]
    assert model["configs"]["mini"]["target"] == 0.5
    code, out, _ = cli("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(out)}
    assert checks["workloads"]["status"] == "ok"
    assert {"python", "torch (process runtime)", "docker engine", "accelerators"} <= set(checks)
    assert code == 0


class Recorder:
    """A RunProgress that keeps what the runner told it: the runs, and the last tick."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.last: tuple[int, str] = (0, "")

    def plan_started(self, plan: RunPlan) -> None:
        self.events.append(("plan", plan.model, len(plan.runs)))

    def run_reached(self, planned: PlannedRun) -> None:
        self.events.append(("reached", planned.label))

    def run_launched(self, planned: PlannedRun, windows: int) -> None:
        self.events.append(("launched", planned.label, windows))

    def run_progress(self, windows_done: int, rate: str) -> None:
        self.last = (windows_done, rate)

    def plan_finished(self) -> None:
        self.events.append(("finished",))


def test_the_runner_tells_its_listener_what_it_runs_and_keeps(sleeper, tmp_path):
    """The run state machine reports through RunProgress (the bars are one listener): every
    run reached, only those it launches launched, each one's windows as they pass."""
    request = Request(workload=find_workload("sleeper"), mode="speed", runs=2, windows=3)
    run_set, runs = tmp_path / "set", single_runs(request)
    first = Recorder()
    run_plan(request, run_set, first, ProcessRuntime(), runs)
    assert first.events == [
        ("plan", "sleeper", 2),
        ("reached", "run-1"), ("launched", "run-1", 4),
        ("reached", "run-2"), ("launched", "run-2", 4),
        ("finished",),
    ]  # fmt: skip
    assert first.last[0] == 6  # the sleeper logs 6 windows whatever it is asked
    assert first.last[1].endswith(" samples/s")
    (run_set / "run-2" / RUN_FILE).unlink()  # run-2 cut off before its record
    again = Recorder()
    run_plan(request, run_set, again, ProcessRuntime(), runs)
    assert again.events == [
        ("plan", "sleeper", 2),
        ("reached", "run-1"),
        ("reached", "run-2"), ("launched", "run-2", 4),
        ("finished",),
    ]  # fmt: skip


def test_doctor_prints_its_hints_as_text_not_markup(cli, sleeper, monkeypatch):
    def no_torch(name: str) -> str:
        raise doctor.PackageNotFoundError(name)

    monkeypatch.setattr(doctor, "version", no_torch)
    _, out, _ = cli("doctor")
    assert "torch (process runtime): pip install 'deepspark[workloads]'" in out
