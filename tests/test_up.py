"""`up`: a suite evaluated model by model, a failed model reported, a killed agent resumed."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from deepspark_agent.evaluations import EVALUATION_FILE, SUMMARY_FILE
from deepspark_agent.runtime.process import GROUP_FILE
from deepspark_agent.suites import load_suite
from deepspark_agent.workloads import WorkloadError
from deepspark_core.attest import STATEMENT_FILE
from deepspark_core.results import RUN_FILE, Result

ENTRY = '[[workloads]]\nmodel = "sleeper"\ndevices = [1]\nstability_runs = {runs}\n{extra}'


def suite(path: Path, *entries: str) -> Path:
    path.write_text('name = "two"\n' + "".join(entries))
    return path


def up(cli, suite_file: Path, out: Path, *args: str) -> tuple[int, list[Result], str]:
    code, stdout, stderr = cli(
        "up", "--suite", str(suite_file), "--runtime", "process", "--out", str(out), "--json",
        *args,
    )  # fmt: skip
    results = [Result.model_validate(r) for r in json.loads(stdout)] if stdout.strip() else []
    return code, results, stderr


def test_each_model_gets_speed_then_converge_runs_and_a_failed_one_is_reported(
    cli, sleeper, tmp_path
):
    (tmp_path / "crash").mkdir()
    (tmp_path / "crash" / "behaviour").write_text("crash")
    suite_file = suite(
        tmp_path / "two.toml",
        ENTRY.format(runs=1, extra='data_dir = "crash"\n'),
        ENTRY.format(runs=3, extra=""),
    )
    code, (crashed, fine), err = up(cli, suite_file, tmp_path / "out")
    assert code == 1
    assert "signing key created" in err  # the first `up` on a host makes its key
    assert [r.label for r in fine.runs] == ["speed-1x", "converge-1", "converge-2", "converge-3"]
    assert [r.mode for r in fine.runs] == ["speed", "converge", "converge", "converge"]
    dims = fine.dimensions
    assert dims.speed.windows == 5  # from the speed run: warm-up dropped, 5 measured
    assert dims.speed == fine.runs[0].speed
    assert dims.stability.runs == 3 and dims.accuracy.value == 0.51  # 0.50, 0.51, 0.52
    assert all(r.status == "aborted" for r in crashed.runs)
    assert crashed.runs[0].reason.startswith("exit code 3")
    (root,) = (tmp_path / "out").iterdir()
    summary = json.loads((root / SUMMARY_FILE).read_text())
    assert [m["succeeded"] for m in summary["models"]] == [False, True]
    for model in summary["models"]:
        assert (root / model["run_set"] / "report.html").is_file()
        code, stdout, err = cli("verify", str(root / model["run_set"] / STATEMENT_FILE))
        assert code == 0 and "verified: signed by" in stdout, err
    code, stdout, _ = cli("report", str(root / summary["models"][0]["run_set"]), "--markdown")
    assert code == 0 and "failed: exit code 3" in stdout


def test_a_killed_agent_resumes_without_rerunning_finished_runs(cli, sleeper, tmp_path):
    """SIGKILL the agent during the second model: --resume keeps the first model's runs, stops
    the workload the dead agent left behind, redoes the cut-off run and finishes."""
    (tmp_path / "second").mkdir()
    behaviour = tmp_path / "second" / "behaviour"
    behaviour.write_text("hang")  # the second model's first run never ends by itself
    suite_file = suite(
        tmp_path / "two.toml",
        ENTRY.format(runs=2, extra=""),
        ENTRY.format(runs=2, extra='data_dir = "second"\n'),
    )
    out = tmp_path / "out"
    agent = subprocess.Popen(
        [sys.executable, "-m", "deepspark_agent", "up", "--suite", str(suite_file),
         "--runtime", "process", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        log = out.glob("*/02-sleeper-mini/speed-1x/mllog.log")
        while "block_stop" not in "".join(p.read_text() for p in log):  # it is hanging now
            assert agent.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
            log = out.glob("*/02-sleeper-mini/speed-1x/mllog.log")
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
    finally:
        agent.kill()
    (root,) = out.iterdir()
    assert (root / EVALUATION_FILE).is_file() and not (root / SUMMARY_FILE).exists()
    first = root / "01-sleeper-mini"
    recorded = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.glob("*/" + RUN_FILE)}
    assert len(recorded) == 3
    cut = root / "02-sleeper-mini" / "speed-1x"
    assert not (cut / RUN_FILE).exists()
    orphan = json.loads((cut / GROUP_FILE).read_text())["pgid"]
    assert psutil.pid_exists(orphan)  # the dead agent's workload runs on
    behaviour.write_text("ok")

    code, (one, two), _ = up(cli, suite_file, out, "--resume")
    assert code == 0
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in recorded} == recorded
    assert not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == "zombie"
    assert [r.label for r in two.runs] == [r.label for r in one.runs]
    assert all(r.status == "success" for r in one.runs + two.runs)
    filled = [{k for k, v in r.dimensions if v is not None} for r in (one, two)]
    assert filled[0] == filled[1] and {"speed", "accuracy", "stability"} <= filled[0]
    assert (root / SUMMARY_FILE).is_file()
    code, _, err = cli("up", "--suite", str(suite_file), "--out", str(out), "--resume")
    assert code == 1 and "no unfinished evaluation" in err


def test_suite_errors_are_one_line(cli, sleeper, tmp_path):
    cases = {
        "unknown key": ('name = "s"\n[[workloads]]\nmodel = "sleeper"\nruns = 5\n', "runs"),
        "no device": ('name = "s"\n[[workloads]]\nmodel = "sleeper"\ndevices = [0]\n', ">= 1"),
        "too many": ('name = "s"\n[[workloads]]\nmodel = "sleeper"\ndevices = [4]\n', "has 1"),
        "two windows": ('name = "s"\n[[workloads]]\nmodel = "sleeper"\nwindows = 2\n', "windows"),
        "typo": ('name = "s"\n[[workloads]]\nmodel = "sleepr"\n', "sleepr"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name.replace(' ', '-')}.toml"
        path.write_text(text)
        code, _, err = cli(
            "up", "--suite", str(path), "--runtime", "process", "--out", str(tmp_path)
        )
        assert code == 1 and err.startswith("error:") and message in err, (name, err)
        assert err.count("\n") == 1, err


def test_ctrl_c_stops_the_workload_and_keeps_the_journal(cli, sleeper, tmp_path):
    """SIGINT (Ctrl-C) during a run: the agent stops the workload's process group, records
    nothing for the run it cut, says how to go on, and exits 130."""
    (tmp_path / "hang").mkdir()
    (tmp_path / "hang" / "behaviour").write_text("hang")
    suite_file = suite(tmp_path / "two.toml", ENTRY.format(runs=1, extra='data_dir = "hang"\n'))
    out = tmp_path / "out"
    agent = subprocess.Popen(
        [sys.executable, "-m", "deepspark_agent", "up", "--suite", str(suite_file),
         "--runtime", "process", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        # As in a terminal: a background job of a non-interactive shell (a CI runner's) is
        # started with SIGINT ignored, which the agent would inherit.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        group = out.glob("*/01-sleeper-mini/speed-1x/" + GROUP_FILE)
        while not list(group):
            assert agent.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
            group = out.glob("*/01-sleeper-mini/speed-1x/" + GROUP_FILE)
        time.sleep(1)  # into the hang
        agent.send_signal(signal.SIGINT)
        _, err = agent.communicate(timeout=60)
    finally:
        agent.kill()
    assert agent.returncode == 130, err
    assert "interrupted" in err and "--resume" in err
    (root,) = out.iterdir()
    cut = root / "01-sleeper-mini" / "speed-1x"
    pgid = json.loads((cut / GROUP_FILE).read_text())["pgid"]
    assert not psutil.pid_exists(pgid) or psutil.Process(pgid).status() == "zombie"
    assert not (cut / RUN_FILE).exists() and not (root / SUMMARY_FILE).exists()


def test_a_suite_selects_each_model_s_framework(sleeper_twin, tmp_path):
    """Two workloads implement one model in two frameworks; a suite picks by framework."""
    entry = '[[workloads]]\nmodel = "sleeper"\n'
    entries = entry + entry + 'framework = "none"\n'
    (tmp_path / "fw.toml").write_text('name = "fw"\nframework = "twin"\n' + entries)
    resolved = load_suite(str(tmp_path / "fw.toml")).resolve()
    assert [(w.name, w.model, w.framework) for _, w in resolved] == [
        ("sleeper_twin", "sleeper", "twin"),
        ("sleeper", "sleeper", "none"),
    ]
    (tmp_path / "paddle.toml").write_text('name = "p"\nframework = "paddlepaddle"\n' + entries)
    with pytest.raises(WorkloadError, match="no paddlepaddle workload implements 'sleeper'"):
        load_suite(str(tmp_path / "paddle.toml")).resolve()


def test_a_nan_accuracy_in_one_seed_fails_that_run_and_the_rest_is_reported(cli, sleeper, tmp_path):
    """Issue 14: one NaN final accuracy in 1 seed used to abort the whole stability set."""
    (tmp_path / "nan").mkdir()
    (tmp_path / "nan" / "behaviour").write_text("nan")  # seed 1 (converge-2) ends with NaN
    suite_file = suite(tmp_path / "nan.toml", ENTRY.format(runs=3, extra='data_dir = "nan"\n'))
    code, (result,), err = up(cli, suite_file, tmp_path / "out")
    assert code == 0, err
    assert [r.status for r in result.runs] == ["success", "success", "aborted", "success"]
    assert result.runs[2].reason == "final eval_accuracy is nan, not a finite number"
    dims = result.dimensions
    assert dims.speed.windows == 5
    assert (dims.stability.runs, dims.stability.failed) == (3, 1)
    (root,) = (tmp_path / "out").iterdir()
    run_set = root / "01-sleeper-mini"
    assert "0.51 (reached, 2 of 3 runs)" in (run_set / "report.md").read_text()
    assert (run_set / "report.html").is_file()
    code, stdout, err = cli("verify", str(run_set / STATEMENT_FILE))
    assert code == 0 and "verified: signed by" in stdout, err


def test_a_budget_starved_model_is_incomplete_and_a_piped_log_keeps_every_column(
    cli, sleeper, tmp_path
):
    """Issue 14: a budget that runs out read as instability, and output to a pipe cut the
    runs table to 80 columns. Four runs of >= 1.2 s each cannot fit in 4 s: the budget kills
    or never starts the last ones, so the model is incomplete and `up` exits 3; its stdout,
    a pipe here, holds every run's row whole."""
    suite_file = suite(tmp_path / "starved.toml", ENTRY.format(runs=3, extra="budget_s = 4\n"))
    out = tmp_path / "out"
    agent = subprocess.run(
        [sys.executable, "-m", "deepspark_agent", "up", "--suite", str(suite_file),
         "--runtime", "process", "--out", str(out)],
        capture_output=True, text=True, timeout=120,  # stdout is a pipe, not a terminal
    )  # fmt: skip
    assert agent.returncode == 3, agent.stderr
    lines = agent.stdout.splitlines()
    assert "…" not in agent.stdout
    assert any("speed-1x" in line and "success" in line for line in lines)
    spent = "not started: the 4 s budget was spent"  # converge-3 never fits
    assert any("converge-3" in line and "incomplete" in line and spent in line for line in lines)
    assert re.search(r"sleeper \(incomplete\) .* incomplete \([0-2] of 3 runs\)", agent.stdout)
    (root,) = out.iterdir()
    result = Result.model_validate_json((root / "01-sleeper-mini" / "result.json").read_text())
    assert result.state == "incomplete" and result.dimensions.stability is None
    assert json.loads((root / SUMMARY_FILE).read_text())["models"][0]["complete"] is False
    _, help_text, _ = cli("up", "--help")
    documented = " ".join(help_text.split())
    assert "3 incomplete (a run the budget killed or never started" in documented
