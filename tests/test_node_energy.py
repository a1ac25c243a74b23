"""Node power, the idle floor and energy per sample (issue 21, part B): a run set whose
telemetry has the chip's lines and node sources' lines at their own rates, and an idle
recording; the row against means computed here by hand; a real run with nothing to sample;
the collector recomputing the same figures from a signed submission."""

from __future__ import annotations

import json
import statistics
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deepspark_agent.telemetry.idle import record_idle
from deepspark_collector.app import create_app
from deepspark_core import metrics
from deepspark_core.assess import assess
from deepspark_core.attest import sign_run_set
from deepspark_core.files import write_json
from deepspark_core.node_power import idle_floor
from deepspark_core.report import markdown_table, seed_row
from deepspark_core.result_bundle import pack_run_set
from deepspark_core.results import IDLE_FILE, PLAN_FILE, PlannedRun, Result
from deepspark_core.runset import raw_files
from deepspark_core.signing import load_private_key
from test_assess import SECOND, plan, write_run
from test_collector import register, settings, submit

TENTH = SECOND // 10
RAPL_START_J = 262_100.0  # past RAPL's 2^18 J range within the run: the sampler unwrapped it


def lines(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def chip(t_ns: int, watts: float, joules: float) -> dict:
    return {"t_ns": t_ns, "scope": "accelerator", "device": "0", "power_w": watts,
            "energy_j": joules}  # fmt: skip


def node(t_ns: int, source: str, **metric: float) -> dict:
    return {"t_ns": t_ns, "scope": "node", "device": source, **metric}


def ipmi_watts(k: int) -> float:
    return 300.0 + 10 * k  # at k + 0.5 s: rising, so a mean over the wrong readings shows


def run_telemetry() -> list[dict]:
    """0..8 s: the chip at 10 Hz (100 W, its counter rising 90 J/s), IPMI at 1 Hz (at k + 0.5
    s), RAPL's package counter at 10 Hz (50 J/s)."""
    rows = [chip(t * TENTH, 100.0, 90.0 * t / 10) for t in range(81)]
    rows += [node(k * SECOND + SECOND // 2, "ipmi", power_w=ipmi_watts(k)) for k in range(8)]
    rows += [
        node(t * TENTH, "rapl:package-0", energy_j=RAPL_START_J + 50.0 * t / 10) for t in range(81)
    ]
    return sorted(rows, key=lambda row: row["t_ns"])


def idle_telemetry() -> list[dict]:
    """2 s at idle, from 100 s: the chip 20 W, IPMI 120, 130, 140 W, RAPL 10 J/s."""
    start = 100 * SECOND
    rows = [chip(start + t * TENTH, 20.0, 20.0 * t / 10) for t in range(21)]
    rows += [node(start + k * SECOND, "ipmi", power_w=120.0 + 10 * k) for k in range(3)]
    rows += [
        node(start + t * TENTH, "rapl:package-0", energy_j=RAPL_START_J + t) for t in range(21)
    ]
    return rows


def node_run_set(run_set: Path) -> Path:
    """A speed run of write_run's windows (the measured ones: 2-3, 4-5, 6-7 s, 50 samples
    each) with run_telemetry, and idle_telemetry as the run set's idle floor."""
    planned = PlannedRun(label="speed-1x", mode="speed", seed=0, nproc=1)
    write_json(run_set / PLAN_FILE, plan([planned], nproc=1, nnodes=1))
    write_run(run_set, planned, 50)
    (run_set / planned.label / "telemetry.jsonl").write_text(lines(run_telemetry()))
    (run_set / IDLE_FILE).write_text(lines(idle_telemetry()))
    return run_set


def test_the_row_shows_chip_node_and_idle_power_and_energy_both_ways(tmp_path: Path) -> None:
    result = assess(node_run_set(tmp_path))
    dims, windows, samples = result.dimensions, [(2, 3), (4, 5), (6, 7)], 150
    seconds = sum(stop - start for start, stop in windows)

    # By hand: IPMI's readings inside the windows; its power rises linearly, so the
    # trapezoid over each window is its value at the window's middle times a second.
    inside = [ipmi_watts(k) for k in range(8) if any(a <= k + 0.5 <= b for a, b in windows)]
    ipmi_mean = statistics.fmean(inside)
    ipmi_j = sum(ipmi_watts(0) + 10 * ((a + b) / 2 - 0.5) for a, b in windows)
    rapl_j = 50.0 * seconds
    chip_counter_j, chip_integral_j = 90.0 * seconds, 100.0 * seconds
    ipmi, rapl = dims.node_power
    assert (ipmi.source, ipmi.power.mean_w, ipmi.power.readings) == ("ipmi", ipmi_mean, 3)
    assert ipmi.power.integral_j == pytest.approx(ipmi_j) and ipmi.power.counter_j is None
    assert ipmi.hz == pytest.approx(1.0) and rapl.hz == pytest.approx(10.0)
    assert rapl.power.counter_j == pytest.approx(rapl_j) and rapl.power.basis == "counter"
    idle = result.idle
    assert (idle.seconds, idle.chip_w, idle.chip_scope) == (2.0, (20.0,), "accelerator")
    assert idle.node_w == pytest.approx({"ipmi": 130.0, "rapl:package-0": 10.0})

    row = seed_row(result)
    assert row["power (W)"] == f"100*1 (accelerator; {chip_counter_j:.4g} J over the windows)"
    gap = (chip_integral_j - chip_counter_j) / chip_counter_j
    assert row["energy (J/sample)"] == (
        f"chip {chip_counter_j / samples:.4g} (energy counter), "
        f"{chip_integral_j / samples:.4g} (power integral), differing by {gap:.0%} (over 10%); "
        f"ipmi {ipmi_j / samples:.4g} (power integral); "
        f"rapl:package-0 {rapl_j / samples:.4g} (energy counter)"
    )
    assert row["node power (W)"] == (
        f"ipmi {ipmi_mean:.4g} (3 readings, 1 Hz); "
        f"rapl:package-0 {rapl_j / seconds:.4g} (energy counter, 10 Hz)"
    )
    assert row["idle (W)"] == (
        f"chip 20*1 (+{100 - 20:g} in the windows); ipmi 130 (+{ipmi_mean - 130:g} in the "
        f"windows); rapl:package-0 10 (+{rapl_j / seconds - 10:g} in the windows) (idle 2 s)"
    )
    assert "| energy (J/sample) | node power (W) | idle (W) |" in markdown_table([result])


def test_a_slow_source_over_short_windows_is_na_with_its_reason() -> None:
    """IPMI at 1 Hz reads nothing inside a 0.3 s window: N/A, never extrapolated; a counter
    that stops before the windows end gives no energy."""
    short = [metrics.Window(6 * TENTH, 9 * TENTH, 10)]
    watts = [metrics.Sample(SECOND // 2, 300.0), metrics.Sample(3 * SECOND // 2, 310.0)]
    with pytest.raises(metrics.MetricError, match=r"no power reading inside .* \(0.3 s\)"):
        metrics.source_power(watts, [], short)
    stopped = [metrics.Sample(0, 0.0), metrics.Sample(7 * TENTH, 35.0)]
    with pytest.raises(metrics.MetricError, match="counter does not span"):
        metrics.source_power([], stopped, short)


def test_telemetry_without_node_lines_or_idle_file_reads_as_before(tmp_path: Path) -> None:
    """A run set from before node sources: no new field in its result (so its signature still
    recomputes), the row says none answered and the idle floor was not measured."""
    node_run_set(tmp_path)
    (tmp_path / IDLE_FILE).unlink()
    telemetry = tmp_path / "speed-1x" / "telemetry.jsonl"
    chip_only = [r for r in run_telemetry() if r["scope"] != "node"]
    telemetry.write_text(lines(chip_only))
    result = assess(tmp_path)
    assert result.idle is None and result.dimensions.node_power is None
    dumped = result.model_dump_json()
    assert '"node_power"' not in dumped and '"idle"' not in dumped
    row = seed_row(result)
    assert (row["node power (W)"], row["idle (W)"]) == (
        "N/A: no node power source",
        "idle not measured",
    )


class Ramp:
    """A node source answering 200 W at every tick."""

    scope = "node"

    def __init__(self) -> None:
        self.closed = threading.Event()

    def read(self) -> dict[str, dict[str, float]]:
        return {"ipmi": {"power_w": 200.0}}

    def close(self) -> None:
        self.closed.set()


def test_the_idle_recording_samples_every_source_and_the_core_reads_it(tmp_path: Path) -> None:
    path = tmp_path / IDLE_FILE
    source = Ramp()
    said = record_idle(path, [source], seconds=0.3, hz=20)
    assert said == "idle floor: 0.3 s with nothing running (node)" and source.closed.is_set()
    floor = idle_floor(tmp_path)
    assert floor.node_w == {"ipmi": 200.0} and floor.chip_w is None and floor.seconds > 0.2


def test_a_real_run_with_no_source_says_so_and_signs_its_idle_file(cli, sleeper, tmp_path):
    """This host has no power source: the idle file is written empty at once, signed with
    the raw files, and the row says why each figure is N/A (power as before)."""
    assert cli("keys", "init")[0] == 0
    code, out, err = cli(
        "run", "sleeper", "--runtime", "process", "--idle-seconds", "1",
        "--out", str(tmp_path), "--json",
    )  # fmt: skip
    assert code == 0, err
    assert "idle floor: no power source to sample" in err
    result = Result.model_validate_json(out)
    row = seed_row(result)
    assert row["idle (W)"] == "N/A: no node power source, nor an accelerator's, answered at idle"
    assert (row["node power (W)"], row["power (W)"]) == ("N/A: no node power source", "N/A")
    assert any("power: no sensor recorded power_w" in note for note in result.notes)
    (run_set,) = tmp_path.iterdir()
    assert run_set / IDLE_FILE in raw_files(run_set)

    code, _, err = cli(
        "run", "sleeper", "--runtime", "process", "--idle-seconds", "0", "--out", str(tmp_path)
    )
    assert code == 0 and "idle floor: not measured (--idle-seconds 0)" in err


def test_the_collector_recomputes_the_same_figures_from_a_submission(cli, tmp_path):
    run_set = node_run_set(tmp_path / "run-set")
    assert cli("keys", "init")[0] == 0
    result = assess(run_set)
    sign_run_set(run_set, result, load_private_key())
    bundle = pack_run_set(run_set, tmp_path / "result.tar").read_bytes()
    with TestClient(create_app(settings(tmp_path))) as client:
        register(client)
        answer = submit(client, bundle)
        assert answer.status_code == 201, answer.text
        sid = answer.json()["submission_id"]
        stored = Result.model_validate(client.get(f"/api/v1/results/{sid}").json()["result"])
        page = client.get(f"/results/{sid}").text
    assert stored == result and stored.idle is not None
    row = seed_row(result)
    for column in ("energy (J/sample)", "node power (W)", "idle (W)"):
        assert row[column] in page.replace("&#43;", "+")
