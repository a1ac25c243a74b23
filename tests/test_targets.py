"""Targets with a source, shortcuts named in the row, and the reference-convergence check
(MLPerf's RCPs, adapted): workload.toml's keys, the plan that records them, the row."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deepspark_agent.workloads import list_workloads
from deepspark_core.assess import assess
from deepspark_core.files import write_json
from deepspark_core.metrics import SLOW_MARGIN_EPOCHS, epochs_to_target, slow_convergence
from deepspark_core.report import markdown_table, seed_row
from deepspark_core.results import PLAN_FILE, PlannedRun, QualityTarget, RunPlan
from deepspark_core.workload_spec import WorkloadError, read_spec
from test_assess import plan, write_run
from test_events import line

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]
SECOND = 1_000_000_000


def contract_only(tmp_path: Path, extra: str) -> Path:
    """The contract-only test workload (its score: 0.5 + 0.1 a window, window 0 first) with
    extra lines in its [configs.mini]."""
    folder = tmp_path / "workloads" / "contract_only"
    shutil.copytree(DATA / "workloads" / "contract_only", folder)
    toml = folder / "workload.toml"
    toml.write_text(toml.read_text() + extra)
    return folder


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("real_data = true\n", "a target on real data needs target_source"),
        ("target_validated = false\n", "target_validated = false needs target_source"),
        (
            "[configs.mini.reference_convergence]\n"
            'epochs = [2, 7]\nglobal_batch = 64\nmeasured = "x"\n',
            r"reference_convergence.epochs must lie in 1..epochs \(6\)",
        ),
    ],
)
def test_a_target_without_its_source_is_refused_naming_the_file(tmp_path, extra, message):
    folder = contract_only(tmp_path, extra)
    with pytest.raises(
        WorkloadError, match=f"^{folder / 'workload.toml'}: configs.mini: .*{message}"
    ):
        read_spec(folder)
    typo = contract_only(tmp_path / "typo", "target_sourc = 'a paper'\n")
    with pytest.raises(WorkloadError, match=r"configs.mini.target_sourc: unknown key$"):
        read_spec(typo)


def test_every_full_config_names_its_targets_source():
    for workload in list_workloads():
        full = workload.configs["full"]
        assert full.target_source, workload.name
        assert len(full.variant) <= 30, f"{workload.name}: the row's config cell stays short"


def test_a_slow_converge_run_is_flagged_from_its_logged_evaluations(tmp_path: Path) -> None:
    """Reference 2-4 epochs at a global batch of 10: a run reaching the target at epoch 7 is
    flagged, one at epoch 5 (the slowest seed plus the margin) is not, and a run at another
    global batch (4 ranks) is not compared. An evaluation without a whole epoch (\"0\") is
    skipped."""
    runs = [
        PlannedRun(label="converge-1", mode="converge", seed=1, nproc=1),
        PlannedRun(label="converge-2", mode="converge", seed=2, nproc=1),
        PlannedRun(label="converge-4x", mode="converge", seed=3, nproc=4),
    ]
    reference = {"reference_epochs": [2, 3, 4, 4], "reference_batch": 10}
    quality = QualityTarget(metric="top1", direction="higher", target=0.5, **reference)
    write_json(
        tmp_path / PLAN_FILE, plan(runs, nproc=1, nnodes=1).model_copy(update={"quality": quality})
    )

    def log(reached: int) -> list[str]:
        lines = [line("run_start", mono_ns=0), line("eval_accuracy", 0.9, epoch_num="0")]
        for epoch in range(1, 9):
            start, stop = (2 * epoch - 1) * SECOND, 2 * epoch * SECOND
            lines.append(line("block_start", window=epoch - 1, mono_ns=start))
            lines.append(line("block_stop", window=epoch - 1, samples_count=10, mono_ns=stop))
            value = 0.6 if epoch >= reached else 0.3
            lines.append(line("eval_accuracy", value, epoch_num=epoch, mono_ns=stop + 1))
        return [*lines, line("run_stop", status="success", mono_ns=18 * SECOND)]

    for planned, reached in zip(runs, (7, 5, 8), strict=True):
        write_run(tmp_path, planned, 10, log=log(reached))
    result = assess(tmp_path)
    assert [r.epochs_to_target for r in result.runs] == [7, 5, None]
    row = seed_row(result)
    flag = "slow convergence: 7 epochs to target (converge-1), reference 2-4"
    assert row["accuracy"] == f"0.6 (reached); {flag}"
    assert epochs_to_target([(1, 0.2), (2, float("nan")), (3, 0.5)], 0.5, "higher") == 3
    assert epochs_to_target([(1, 0.4)], 0.3, "lower") is None
    assert not slow_convergence(4 + SLOW_MARGIN_EPOCHS, [4]) and slow_convergence(6, [4])


def test_a_plan_from_before_the_target_source_reads_and_dumps_as_before(tmp_path: Path) -> None:
    """The new fields are left out while unset: an older plan.json (and the signed result
    that repeats it) stays byte for byte what it was."""
    old = plan([PlannedRun(label="converge-1", mode="converge", seed=1, nproc=1)])
    dumped = json.loads(old.model_dump_json())
    assert set(dumped["quality"]) == {"metric", "direction", "target"}
    assert "variant" not in dumped
    assert RunPlan.model_validate(dumped) == old


def test_the_row_names_the_variant_the_unvalidated_target_and_slow_convergence(cli, tmp_path):
    """A real run of the contract-only workload (its score reaches 0.9 at window 4) with a
    reference of 1-2 epochs: the terminal's row, report.md and report.html all say so, and
    the plan records the target's source for the collector."""
    folder = contract_only(
        tmp_path,
        'variant = "no frobnicator"\ntarget_validated = false\n'
        'target_source = "a guess, never checked"\n'
        "[configs.mini.reference_convergence]\nepochs = [1, 2, 2]\nglobal_batch = 64\n"
        'measured = "by hand"\n',
    )
    code, out, err = cli(
        "run", "contract_only", "--workloads", str(folder.parent), "--runtime", "process",
        "--mode", "converge", "--out", str(tmp_path / "runs"),
    )  # fmt: skip
    assert code == 0, err
    flag = "slow convergence: 4 epochs to target (run-1), reference 1-2"
    run_set = next((tmp_path / "runs").iterdir())
    markdown, html = (run_set / "report.md").read_text(), (run_set / "report.html").read_text()
    for text in (" ".join(out.split()), markdown, html):
        assert "score 0.9 (unvalidated)" in text
        assert "mini (no frobnicator)" in text
        assert flag in text
    assert "a guess, never checked" in html
    quality = RunPlan.model_validate_json((run_set / PLAN_FILE).read_text()).quality
    assert (quality.source, quality.validated) == ("a guess, never checked", False)
    assert markdown.strip() == markdown_table([assess(run_set)])
    # The script that turns a reference sweep's run set into the table to check in
    script = ROOT / "scripts" / "reference-convergence"
    table = subprocess.run([sys.executable, script, run_set], capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    assert "epochs = [4]  # seeds 0-0\nglobal_batch = 64\n" in table.stdout
    wrong = subprocess.run([sys.executable, script, tmp_path], capture_output=True, text=True)
    assert (wrong.returncode, wrong.stderr.count("\n")) == (1, 1)
