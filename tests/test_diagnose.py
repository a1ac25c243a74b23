"""`baseline create` and `diagnose`: a baseline of two real `up` evaluations, and a third
with injected regressions found, with their evidence, the exit code a CI gates on, and
byte-identical JSON on a rerun.

The evaluations run the framework-free `sleeper` and its twin (seconds a run). The third
evaluation's sleeper takes 0.3 s a window instead of 0.2 and scores below its target (the
workload's documented `slow` behaviour), its twin crashes, and its accelerator telemetry is
the recorded H100 nvidia-smi output replayed with every other reading throttled (SM clock
halved, 93 C).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import DATA, fake_smi_tool, invoke, twin_workloads
from deepspark_agent.exits import EXIT_REGRESSION
from deepspark_agent.workloads import WORKLOADS_ENV
from deepspark_core.baseline import Baseline
from deepspark_core.diagnosis import Diagnosis
from deepspark_core.events import read_events
from deepspark_core.rules import Rules, read_rules

ROOT = Path(__file__).parents[1]
LOAD = (
    DATA / "vendor-smi" / "nvidia-smi__query-gpu-csv-header-units__nvgpuexp-h100-590.48.01-load.txt"
)
SUITE = """name = "daily"
[[workloads]]
model = "sleeper"
devices = [1]
stability_runs = 2
{sleeper}
[[workloads]]
model = "sleeper_twin"
devices = [1]
stability_runs = 1
{twin}
"""


@dataclass(frozen=True)
class Evaluations:
    good: list[Path]  # two evaluations of a known-good stack
    bad: Path  # the regressed one
    baseline: Path  # built from `good`


def up(tmp: Path, name: str, telemetry: str, sleeper: str = "", twin: str = "") -> Path:
    suite = tmp / f"{name}.toml"
    suite.write_text(SUITE.format(sleeper=sleeper, twin=twin))
    out = tmp / name
    code, _, err = invoke(
        "up", "--suite", str(suite), "--runtime", "process", "--devices", "none",
        "--telemetry", telemetry, "--out", str(out),
    )  # fmt: skip
    assert code in (0, 1), err  # 1: the crashing twin
    (evaluation,) = out.iterdir()
    return evaluation


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory: pytest.TempPathFactory) -> Evaluations:
    tmp = tmp_path_factory.mktemp("diagnose")
    for behaviour in ("slow", "crash"):
        (tmp / behaviour).mkdir()
        (tmp / behaviour / "behaviour").write_text(behaviour)
    throttled = tmp / "throttled.txt"
    text = LOAD.read_text().replace(", 59, 26, 54, ", ", 93, 26, 54, ")
    throttled.write_text(text.replace("%, 1980 MHz, 1980 MHz", "%, 990 MHz, 990 MHz"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(tmp / "config"))
        patch.setenv(WORKLOADS_ENV, str(twin_workloads(tmp / "workloads")))
        good = [up(tmp, f"good{n}", "none") for n in (1, 2)]
        fake_smi_tool(tmp / "bin", patch)
        patch.setenv("FAKE_SMI_FILES", f"{LOAD}:{throttled}")
        bad = up(tmp, "bad", "smi:nvidia-smi", 'data_dir = "slow"', 'data_dir = "crash"')
        baseline = tmp / "baseline.json"
        code, _, err = invoke("baseline", "create", *map(str, good), "-o", str(baseline))
    assert code == 0, err
    return Evaluations(good, bad, baseline)


def diagnose(evaluation: Path, baseline: Path, *args: str) -> tuple[int, str, str]:
    return invoke("diagnose", str(evaluation), "--baseline", str(baseline), *args)


def test_the_baseline_holds_each_model_s_figures_over_both_evaluations(evaluations):
    baseline = Baseline.model_validate_json(evaluations.baseline.read_bytes())
    assert [s.name for s in baseline.sources] == [e.name for e in evaluations.good]
    assert all(set(s.plans) == {"sleeper-mini", "sleeper_twin-mini"} for s in baseline.sources)
    sleeper = baseline.models["sleeper-mini"]
    assert sleeper.evaluations == [e.name for e in evaluations.good]
    assert {"speed", "end_to_end_speed", "accuracy", "memory", "stability_cv"} <= set(
        sleeper.figures
    )
    speed = sleeper.figures["speed"]
    assert speed.min <= speed.reference <= speed.max and speed.evaluations == 2
    assert 400 < speed.reference < 510  # 100 samples per 0.2 s window
    accuracy = sleeper.figures["accuracy"]  # seeds 0 and 1 score 0.50 and 0.51 each time
    assert accuracy.reference == pytest.approx(0.505) and accuracy.stdev == 0
    assert sleeper.figures["memory"].scope == "process-tree"


def test_a_regressed_evaluation_gives_the_expected_findings_and_exit_code(evaluations):
    code, out, err = diagnose(evaluations.bad, evaluations.baseline, "--json")
    assert code == EXIT_REGRESSION, err
    diagnosis = Diagnosis.model_validate_json(out)
    assert diagnosis.verdict == "regression"
    regressions = {(f.model, f.rule) for f in diagnosis.findings if f.severity == "regression"}
    assert regressions == {
        ("sleeper-mini", "accuracy.below_target"),
        ("sleeper-mini", "accuracy.below_baseline"),
        ("sleeper-mini", "ratio.speed"),
        ("sleeper-mini", "ratio.end_to_end_speed"),
        ("sleeper_twin-mini", "model.failed"),
    }
    found = {f.rule: f for f in diagnosis.findings if f.model == "sleeper-mini"}
    speed = found["ratio.speed"]
    assert speed.ratio == pytest.approx(2 / 3, rel=0.05)  # 0.3 s windows for 0.2 s
    assert speed.baseline.evaluations == 2 and speed.evidence[0].startswith("speed-1x: windows 1-5")
    assert found["accuracy.below_target"].value == pytest.approx(0.405)
    # Telemetry: scope changed, so memory is not compared; the throttled readings are seen
    assert (
        found["ratio.memory"].severity == "warning"
        and "not compared" in found["ratio.memory"].message
    )
    assert found["throttling.clock"].value == pytest.approx(0.5)
    assert "990 of its 1980 MHz" in found["throttling.clock"].evidence[0]
    assert found["throttling.temperature"].value == 93
    twin = next(f for f in diagnosis.findings if f.rule == "model.failed")
    assert twin.evidence[0].startswith("speed-1x: aborted, exit code 3")

    again = diagnose(evaluations.bad, evaluations.baseline, "--json")
    assert again == (code, out, err)  # the same verdict, the same bytes

    code, table, _ = diagnose(evaluations.bad, evaluations.baseline)
    assert code == EXIT_REGRESSION and "verdict: regression (5 regressions" in table
    code, md, _ = diagnose(evaluations.bad, evaluations.baseline, "--markdown")
    assert code == EXIT_REGRESSION and "| regression | sleeper-mini | ratio.speed |" in md


def test_a_known_good_evaluation_passes(evaluations):
    code, out, err = diagnose(evaluations.good[0], evaluations.baseline, "--json")
    assert code == 0, err
    diagnosis = Diagnosis.model_validate_json(out)
    assert (
        diagnosis.verdict == "pass" and diagnosis.compared == 7
    )  # 4 figures of sleeper, 3 of its twin (1 converge run)
    assert not [f for f in diagnosis.findings if f.severity == "regression"]


def test_rules_change_the_verdict_and_a_lone_run_set_misses_the_other_model(evaluations, tmp_path):
    run_set = evaluations.bad / "01-sleeper-mini"
    code, out, _ = diagnose(run_set, evaluations.baseline, "--json")
    missing = [f for f in Diagnosis.model_validate_json(out).findings if f.rule == "model.missing"]
    assert code == EXIT_REGRESSION and [f.model for f in missing] == ["sleeper_twin-mini"]

    rules = tmp_path / "lenient.toml"
    rules.write_text(
        "[ratios.speed]\ndirection = 'higher'\nregression = 0.5\nwarning = 0.7\n"
        "[ratios.end_to_end_speed]\ndirection = 'higher'\nwarning = 0.7\n"
        "[accuracy]\nbelow_target = 'warning'\nbelow_baseline = 'off'\n"
        "[models]\nmissing = 'info'\n"
    )
    code, out, err = diagnose(run_set, evaluations.baseline, "--rules", str(rules), "--json")
    assert code == 0, err
    found = {f.rule: f.severity for f in Diagnosis.model_validate_json(out).findings}
    assert found["ratio.speed"] == found["accuracy.below_target"] == "warning"
    assert found["model.missing"] == "info" and "accuracy.below_baseline" not in found


def test_the_shipped_rules_file_is_the_built_in_rules():
    assert read_rules(ROOT / "rules" / "default.toml") == Rules()


def test_bad_inputs_are_one_line_errors(evaluations, tmp_path):
    result = evaluations.bad / "01-sleeper-mini" / "result.json"
    typo = tmp_path / "typo.toml"
    typo.write_text("[ratios.sped]\ndirection = 'higher'\n")
    cases = [
        (("diagnose", str(evaluations.bad), "--baseline", str(result)),
         "schema_version 'deepspark.result/v2', expected 'deepspark.baseline/v1'"),
        (("diagnose", str(evaluations.bad), "--baseline", str(evaluations.baseline),
          "--rules", str(typo)), "ratios.sped: unknown key"),
        (("diagnose", str(tmp_path / "nowhere"), "--baseline", str(evaluations.baseline)),
         "nowhere: no such evaluation or run set"),
        (("baseline", "create", str(tmp_path), "-o", str(tmp_path / "b.json")),
         "neither an evaluation (evaluation.json) nor a run set (plan.json)"),
        (("baseline", "create", str(evaluations.bad), str(evaluations.bad), "-o",
          str(tmp_path / "b.json")), "given twice"),
    ]  # fmt: skip
    for args, message in cases:
        code, _, err = invoke(*args)
        assert code == 1 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "b.json").exists()


def test_telemetry_gaps_are_found_in_the_measured_windows(evaluations, tmp_path):
    """A recorder that stalled after the warm-up window (its later lines cut from a copy of a
    good run set) and one asked for 1000 Hz that achieved 10."""
    run_set = shutil.copytree(evaluations.good[0] / "01-sleeper-mini", tmp_path / "stalled")
    telemetry = run_set / "speed-1x" / "telemetry.jsonl"
    first = read_events(run_set / "speed-1x" / "mllog.log").windows()[1].start_ns
    lines = telemetry.read_text().splitlines(keepends=True)
    telemetry.write_text("".join(line for line in lines if json.loads(line)["t_ns"] < first))
    rules = tmp_path / "rules.toml"
    rules.write_text("[telemetry]\nrecorder_hz = 1000.0\n")
    code, out, err = diagnose(run_set, evaluations.baseline, "--rules", str(rules), "--json")
    assert code == EXIT_REGRESSION, err  # its twin is missing
    found = {
        f.rule: f for f in Diagnosis.model_validate_json(out).findings if f.model == "sleeper-mini"
    }
    assert found["telemetry.empty_window"].evidence == ["speed-1x: windows 1, 2, 3, 4, 5"]
    rate = found["telemetry.rate"]
    assert [e.partition(":")[0] for e in rate.evidence] == ["converge-1", "converge-2"]
    assert 5 < rate.value < 11  # 10 Hz achieved, under 0.5 x 1000
    assert found["ratio.memory"].message.startswith("memory: not measured (speed-1x: memory")
