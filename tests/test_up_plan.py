"""`up --plan`: the runs a suite would make on this node, printed; nothing runs or is written."""

from __future__ import annotations

import json

from deepspark_agent.suites import load_suite


def test_the_gpu_smoke_suite_is_planned_without_running(cli, tmp_path) -> None:
    out = tmp_path / "runs"
    code, stdout, stderr = cli("up", "--suite", "gpu-smoke", "--out", str(out), "--plan", "--json")
    assert code == 0, stderr
    planned = json.loads(stdout)
    assert planned["suite"] == "gpu-smoke" and planned["node_devices"] == 1
    entries = [(m["workload"], m["config"], m["precision"]) for m in planned["models"]]
    assert entries == [
        ("resnet50", "full", "bf16"), ("resnet50", "full", "amp"),
        ("bert_large", "full", "bf16"), ("bert_large", "full", "amp"),
        ("resnet50", "mini", "fp32"),
    ]  # fmt: skip
    labels = [[r["label"] for r in m["runs"]] for m in planned["models"]]
    assert labels == [["speed-1x"]] * 4 + [["speed-1x", "converge-1", "converge-2"]]
    assert all(r["nproc"] == 1 for m in planned["models"] for r in m["runs"])
    # The preset's batch where the entry sets none; full configs need no dataset for speed.
    assert [m["batch_size"] for m in planned["models"]] == [256, 256, 32, 32, 32]
    assert all(m["data_dir"] is None for m in planned["models"])
    assert not out.exists()  # nothing written: no evaluation directory, no key


def test_the_plan_is_a_table_by_default_and_refuses_what_it_cannot_plan(cli, tmp_path) -> None:
    code, stdout, _ = cli("up", "--suite", "smoke", "--plan")
    assert code == 0 and "smoke: the plan on this node" in stdout
    for entry in load_suite("smoke").workloads:
        assert entry.model in stdout
    code, _, stderr = cli("up", "--suite", "smoke", "--plan", "--resume")
    assert code == 1
    assert stderr == "error: --plan reads a suite file: not with --bundle or --resume\n"
    too_many = tmp_path / "s.toml"
    too_many.write_text('name = "s"\n[[workloads]]\nmodel = "resnet50"\ndevices = [4]\n')
    code, _, stderr = cli("up", "--suite", str(too_many), "--plan")
    assert code == 1 and "devices 4 asked, this node has 1" in stderr
